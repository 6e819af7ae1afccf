"""Tests of processing.decoding: VindLU frame sampling, probing, decoding with every backend, and bad files.

The test videos are written here with PyAV: frame i is a flat grey of value 8 * i (under a band of noise that keeps
packets large enough to cut a file mid-stream), so the grey level tells which frame was decoded.
"""

import logging
import sys

import av
import numpy as np
import PIL.Image
import pytest

from processing.decoding import (
    BACKENDS,
    VideoDecodeError,
    _warn_once,
    available_backends,
    decode_clip,
    probe_video,
    sample_frame_indices,
)

GREY_STEP = 8
HEIGHT, WIDTH = 48, 64


def write_video(path, num_frames=30, height=HEIGHT, width=WIDTH, gop=5, container_format=None, options=None):
    """An h264 video whose frame i is grey 8 * i below a noise band; a keyframe every `gop` frames."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
        if num_frames == 0:
            container.start_encoding()  # write the header of an empty stream
        for index in range(num_frames):
            frame = np.full((height, width, 3), GREY_STEP * index, np.uint8)
            frame[: height // 4] = rng.integers(0, 256, (height // 4, width, 3))
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def frame_ids(clip: np.ndarray) -> list[int]:
    """Which frame of a `write_video` video each decoded frame is (from the grey below the noise band)."""
    grey = clip[:, clip.shape[1] // 4 + 2 :].reshape(len(clip), -1).mean(axis=1)
    return np.rint(grey / GREY_STEP).astype(int).tolist()


def box_offset(data: bytes, name: bytes) -> int:
    """Byte offset of a top-level MP4 box."""
    offset = 0
    while offset < len(data):
        if data[offset + 4 : offset + 8] == name:
            return offset
        offset += int.from_bytes(data[offset : offset + 4], "big")
    raise AssertionError(f"no {name} box")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    paths = {
        "mp4": write_video(folder / "clip.mp4"),
        "mkv": write_video(folder / "clip.mkv"),  # no frame count in the header
        "avi": write_video(folder / "clip.avi", container_format="avi"),
        "short": write_video(folder / "short.mp4", num_frames=3),
        "faststart": write_video(folder / "faststart.mp4", options={"movflags": "faststart"}),
    }
    data = open(paths["faststart"], "rb").read()
    (folder / "truncated_faststart.mp4").write_bytes(data[: len(data) // 2])
    paths["truncated_faststart"] = str(folder / "truncated_faststart.mp4")
    # Cut inside the first frame's packet: the header reads, no frame decodes.
    (folder / "no_frame.mp4").write_bytes(data[: box_offset(data, b"mdat") + 24])
    paths["no_frame"] = str(folder / "no_frame.mp4")
    data = open(paths["avi"], "rb").read()
    (folder / "truncated.avi").write_bytes(data[: len(data) // 2])  # ends early without an error
    paths["truncated_avi"] = str(folder / "truncated.avi")
    return paths


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    ("total", "num", "expected"),
    [
        (20, 4, [2, 7, 12, 17]),
        (30, 8, [1, 4, 8, 12, 16, 19, 23, 27]),
        (10, 10, list(range(10))),
        (2, 4, [0, 1, 1, 1]),
        (1, 3, [0, 0, 0]),
    ],
)
def test_middle_sampling_values(total, num, expected):
    assert sample_frame_indices(total, num).tolist() == expected
    assert sample_frame_indices(total, num, mode="middle", rng=np.random.default_rng(1)).tolist() == expected


def test_random_sampling_stays_in_its_segment_and_reaches_every_frame():
    rng = np.random.default_rng(0)
    bounds = np.linspace(0, 30, 9).astype(int)  # 8 segments of 30 frames: [0, 3, 7, 11, 15, 18, 22, 26, 30]
    seen = set()
    for _ in range(300):
        indices = sample_frame_indices(30, 8, mode="random", rng=rng)
        assert len(indices) == 8
        assert np.all(indices >= bounds[:-1]) and np.all(indices < bounds[1:])
        seen.update(indices.tolist())
    assert seen == set(range(30))  # VindLU's draw never picks a segment's last frame; this one does


def test_random_sampling_is_deterministic_for_a_seed():
    first = sample_frame_indices(300, 12, mode="random", rng=np.random.default_rng(7))
    again = sample_frame_indices(300, 12, mode="random", rng=np.random.default_rng(7))
    assert first.tolist() == again.tolist()
    assert sample_frame_indices(300, 12, mode="random", rng=7).tolist() == first.tolist()
    rng = np.random.default_rng(7)
    draws = {tuple(sample_frame_indices(300, 12, mode="random", rng=rng)) for _ in range(5)}
    assert len(draws) == 5  # one generator moves on between calls


def test_random_sampling_of_a_short_video_repeats_the_last_frame():
    assert sample_frame_indices(3, 5, mode="random", rng=np.random.default_rng(0)).tolist() == [0, 1, 2, 2, 2]


@pytest.mark.parametrize("mode", ["middle", "random"])
@pytest.mark.parametrize(("total", "num"), [(0, 4), (10, 0), (10, -1), (10, 2.5), (True, 4)])
def test_sampling_rejects_bad_counts(mode, total, num):
    with pytest.raises(ValueError, match="must be a positive integer"):
        sample_frame_indices(total, num, mode=mode)


def test_sampling_rejects_a_bad_mode():
    with pytest.raises(ValueError, match="'uniform'"):
        sample_frame_indices(10, 4, mode="uniform")


# ---------------------------------------------------------------- probing and decoding good files


def test_probe_reads_the_header(videos):
    info = probe_video(videos["mp4"])
    assert (info.num_frames, info.height, info.width, info.fps, info.codec) == (30, HEIGHT, WIDTH, 30.0, "h264")
    assert info.duration == pytest.approx(1.0)
    assert "mp4" in info.format
    mkv = probe_video(videos["mkv"])
    assert (mkv.num_frames, mkv.format) == (30, "matroska,webm")  # counted from packets


# In an h264 AVI the first frame has pts 1 while the stream starts at 0: frame numbers must count from the first
# frame's timestamp, or every frame comes back one early.
@pytest.mark.parametrize("kind", ["mp4", "mkv", "avi"])
def test_decode_clip_returns_the_middle_frames(videos, kind):
    clip = decode_clip(videos[kind], 8)
    assert clip.shape == (8, HEIGHT, WIDTH, 3) and clip.dtype == np.uint8
    assert frame_ids(clip) == [1, 4, 8, 12, 16, 19, 23, 27]


def test_decode_clip_random_follows_the_seeded_indices(videos):
    clip = decode_clip(videos["mp4"], 6, mode="random", rng=np.random.default_rng(3))
    assert frame_ids(clip) == sample_frame_indices(30, 6, mode="random", rng=np.random.default_rng(3)).tolist()


def test_decode_clip_of_a_short_video_repeats_its_last_frame(videos):
    assert frame_ids(decode_clip(videos["short"], 5)) == [0, 1, 2, 2, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_images_are_one_frame_videos_whatever_the_backend(tmp_path, monkeypatch, backend):
    monkeypatch.setitem(sys.modules, "decord", None)  # an image needs no video backend
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    PIL.Image.fromarray(image).save(tmp_path / "image.png")
    clip = decode_clip(tmp_path / "image.png", 4, mode="random", backend=backend)
    assert clip.shape == (4, 20, 30, 3)
    assert all(np.array_equal(frame, image) for frame in clip)
    info = probe_video(tmp_path / "image.png")
    assert (info.num_frames, info.height, info.width, info.format) == (1, 20, 30, "png")


# ---------------------------------------------------------------- damaged files


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_truncated_mp4_is_sampled_from_the_frames_that_decode(videos, backend, caplog):
    if backend != "pyav":
        pytest.importorskip(backend)
    path = videos["truncated_faststart"]
    assert probe_video(path).num_frames == 30  # the header still claims every frame
    with caplog.at_level(logging.WARNING, logger="processing.decoding"):
        clip = decode_clip(path, 8, backend=backend)
    decodable = sum(1 for _ in _decodable_frames(path))
    assert 0 < decodable < 30
    assert frame_ids(clip) == sample_frame_indices(decodable, 8).tolist()
    assert f"{path}: the header says 30 frames but only {decodable} decode" in caplog.text


def _decodable_frames(path):
    with av.open(path) as container:
        try:
            yield from container.decode(video=0)
        except av.FFmpegError:
            return


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_avi_that_ends_early_is_sampled_from_the_frames_it_has(videos, backend):
    if backend != "pyav":
        pytest.importorskip(backend)
    decodable = sum(1 for _ in _decodable_frames(videos["truncated_avi"]))
    clip = decode_clip(videos["truncated_avi"], 4, mode="random", backend=backend, rng=np.random.default_rng(0))
    assert len(clip) == 4 and max(frame_ids(clip)) < decodable < 30


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_with_no_decodable_frame_raises(videos, backend):
    if backend != "pyav":
        pytest.importorskip(backend)
    with pytest.raises(VideoDecodeError, match="no frame decodes") as caught:
        decode_clip(videos["no_frame"], 4, backend=backend)
    assert caught.value.path == videos["no_frame"]


def _write_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _bad_file(kind, folder, videos):
    """(path, a phrase the error must contain) for each kind of unusable file."""
    path = folder / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "empty (0 bytes)"
    if kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).bytes(4096) + b"\0")
        return path, "unsupported container or corrupt data"
    if kind == "text":
        path.write_text("this is a caption file, not a video\n" * 20)
        return path, "looks like a text file"
    if kind == "lfs_pointer":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 12345\n")
        return path, "Git LFS pointer"
    if kind == "truncated_index":  # the usual mp4: its index comes last and was cut off
        data = open(videos["mp4"], "rb").read()
        path.write_bytes(data[: len(data) // 2])
        return path, "no index (moov box): the file is probably truncated"
    if kind == "audio_only":
        _write_audio_only(path)
        return path, "no video stream (only audio stream(s))"
    if kind == "zero_frames":
        path = folder / "zero_frames.avi"
        write_video(path, num_frames=0, container_format="avi")
        return path, "the video stream has 0 frames"
    if kind == "tiny":
        write_video(path, num_frames=3, height=4, width=4)
        return path, "resolution 4x4"
    if kind == "bad_image":
        path = folder / "bad_image.jpg"
        path.write_bytes(b"\xff\xd8 not really a jpeg")
        return path, "PIL cannot read this image"
    raise AssertionError(kind)


BAD_FILES = [
    "empty",
    "corrupt",
    "text",
    "lfs_pointer",
    "truncated_index",
    "audio_only",
    "zero_frames",
    "tiny",
    "bad_image",
]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_unusable_files_raise_an_error_naming_the_file_and_the_problem(tmp_path, videos, kind):
    path, problem = _bad_file(kind, tmp_path, videos)
    for call in (lambda: probe_video(path), lambda: decode_clip(path, 4)):
        with pytest.raises(VideoDecodeError) as caught:
            call()
        assert str(path) in str(caught.value) and problem in str(caught.value)
        assert isinstance(caught.value, ValueError) and caught.value.path == str(path)


def test_missing_file_raises_file_not_found(tmp_path):
    path = tmp_path / "missing.mp4"
    for call in (probe_video, lambda p: decode_clip(p, 4)):
        with pytest.raises(FileNotFoundError, match="missing.mp4"):
            call(path)


def test_resolution_bounds_are_configurable(tmp_path, videos):
    tiny, _ = _bad_file("tiny", tmp_path, videos)
    assert decode_clip(tiny, 2, min_resolution=4).shape == (2, 4, 4, 3)
    with pytest.raises(VideoDecodeError, match=r"resolution 64x48 .* 8\.\.32 px"):
        decode_clip(videos["mp4"], 2, max_resolution=32)
    with pytest.raises(ValueError, match="min_resolution=64, max_resolution=32"):
        probe_video(videos["mp4"], min_resolution=64, max_resolution=32)


# ---------------------------------------------------------------- backends


def test_unknown_backend_lists_the_valid_ones(videos):
    with pytest.raises(ValueError, match="'pyav', 'torchcodec', 'decord'.*'opencv'"):
        decode_clip(videos["mp4"], 4, backend="opencv")


@pytest.mark.parametrize(
    ("backend", "modules", "hint"),
    [
        ("decord", ["decord"], "pip install decord"),
        ("torchcodec", ["torchcodec", "torchcodec.decoders"], "pip install torchcodec`.*libavcodec59"),
    ],
)
def test_a_missing_backend_says_what_to_install(videos, monkeypatch, backend, modules, hint):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ImportError, match=hint):
        decode_clip(videos["mp4"], 4, backend=backend)
    assert backend not in available_backends() and "pyav" in available_backends()


@pytest.mark.parametrize("backend", ["torchcodec", "decord"])
@pytest.mark.parametrize("kind", ["mp4", "mkv", "short"])
def test_backends_decode_identical_frames(videos, backend, kind):
    pytest.importorskip(backend)
    for seed in (0, 1):
        expected = decode_clip(videos[kind], 8, mode="random", rng=np.random.default_rng(seed))
        clip = decode_clip(videos[kind], 8, mode="random", backend=backend, rng=np.random.default_rng(seed))
        assert clip.dtype == np.uint8 and np.array_equal(clip, expected)


def test_torchcodec_decodes_the_right_frames_of_an_h264_avi(videos):
    pytest.importorskip("torchcodec")
    assert frame_ids(decode_clip(videos["avi"], 8, backend="torchcodec")) == [1, 4, 8, 12, 16, 19, 23, 27]


def test_decord_h264_avi_is_decoded_with_pyav(videos, caplog):
    decord = pytest.importorskip("decord")
    indices = [1, 4, 8, 12, 16, 19, 23, 27]
    assert frame_ids(decord.VideoReader(videos["avi"]).get_batch(indices).asnumpy()) != indices  # decord's bug
    _warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="processing.decoding"):
        clip = decode_clip(videos["avi"], 8, backend="decord")
    assert np.array_equal(clip, decode_clip(videos["avi"], 8, backend="pyav"))
    assert "decord returns wrong frames" in caplog.text
