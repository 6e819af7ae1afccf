"""The processor recovers truncated files as `decode_clip` does; mkv files (no frame count in the header) seek from a
packet scan; `load_video_file` picks seeking or one pass from the keyframe layout (issue 13, point 7)."""

import av
import numpy as np
import pytest
import torch

import modeling_t2v2t.video_processing_t2v2t as video_processing
from modeling_t2v2t import T2V2TVideoProcessor
from modeling_t2v2t.video_processing_t2v2t import load_video_file, segment_middle_indices
from processing.decoding import decode_clip

GREY_STEP = 8


def write_video(path, num_frames=40, gop=5, options=None):
    """h264 whose frame i is grey 8 * (i % 30) below a noise band (rows 0-11, so frames have a real size); a
    keyframe exactly every `gop` frames, no B-frames."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
        for index in range(num_frames):
            frame = np.full((48, 64, 3), GREY_STEP * (index % 30), np.uint8)
            frame[:12] = rng.integers(0, 256, (12, 64, 3))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return str(path)


def decodable_frames(path) -> int:
    count = 0
    with av.open(path) as container:
        try:
            for _ in container.decode(video=0):
                count += 1
        except av.FFmpegError:
            pass
    return count


def test_the_processor_recovers_a_truncated_file_like_decode_clip(tmp_path, caplog):
    data = open(write_video(tmp_path / "whole.mp4", num_frames=30, options={"movflags": "faststart"}), "rb").read()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    decodable = decodable_frames(str(path))
    assert 4 <= decodable < 30
    processor = T2V2TVideoProcessor(num_frames=4, do_resize=False, do_rescale=False, do_normalize=False)
    pixels = processor(videos=[str(path)])["pixel_values_videos"][0]  # (T, C, H, W)
    greys = pixels[:, :, 24:].float().mean(dim=(1, 2, 3))
    expected = segment_middle_indices(decodable, 4)
    torch.testing.assert_close(greys, torch.tensor(GREY_STEP * expected, dtype=torch.float32), atol=2, rtol=0)
    clip = decode_clip(path, 4)
    torch.testing.assert_close(torch.from_numpy(clip).permute(0, 3, 1, 2), pixels.to(torch.uint8))
    assert f"the header says 30 frames but only {decodable} decode" in caplog.text


@pytest.mark.parametrize(
    ("keyframes", "indices", "pays"),
    [
        # 2 keyframes in 300 frames: seeking skips only 250 - 244 frames, less than a seek costs.
        ([0, 250], [18, 56, 93, 131, 168, 206, 243, 281], False),
        # a keyframe every 15: each of 8 seeks skips ~20 frames.
        (list(range(0, 300, 15)), [18, 56, 93, 131, 168, 206, 243, 281], True),
        # everything wanted is before the first frames: nothing to skip.
        (list(range(0, 300, 15)), [0, 1, 2, 3], False),
        # one keyframe far beyond the first target: one seek saves 190 frames.
        ([0, 200], [5, 201], True),
    ],
)
def test_seeking_is_chosen_only_when_it_decodes_less(keyframes, indices, pays):
    assert video_processing._seeking_pays(keyframes, np.array(indices)) is pays


def _count_calls(monkeypatch, name):
    calls = []
    original = getattr(video_processing, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(video_processing, name, counted)
    return calls


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_many_keyframes_seek_few_keyframes_decode_in_one_pass(tmp_path, monkeypatch, suffix):
    many = write_video(tmp_path / f"many{suffix}", num_frames=120, gop=5)
    few = write_video(tmp_path / f"few{suffix}", num_frames=120, gop=120)
    if suffix == ".mkv":
        with av.open(many) as container:
            assert container.streams.video[0].frames == 0  # the count comes from the packet scan
    sample = lambda metadata: segment_middle_indices(metadata.total_num_frames, 4)  # noqa: E731
    seeks = _count_calls(monkeypatch, "_decode_by_seeking")
    passes = _count_calls(monkeypatch, "_decode_in_order")
    frames, metadata = load_video_file(many, sample)
    assert (len(seeks), len(passes)) == (1, 0) and metadata.total_num_frames == 120
    assert np.array_equal(frames, load_video_file(many, sample, strategy="sequential")[0])
    seeks.clear(), passes.clear()
    frames, _ = load_video_file(few, sample)
    assert (len(seeks), len(passes)) == (0, 1)
    assert np.array_equal(frames, load_video_file(few, sample, strategy="seek")[0])
    expected = GREY_STEP * (segment_middle_indices(120, 4) % 30)
    assert np.abs(frames[:, 24:].reshape(4, -1).mean(axis=1) - expected).max() < 2
