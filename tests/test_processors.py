"""Tests of T2V2TVideoProcessor and T2V2TProcessor: frame sampling, decoding, normalisation, errors, save/load."""

import json
import logging
from pathlib import Path

import av
import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoProcessor, AutoVideoProcessor, BeitImageProcessor, BertTokenizer
from transformers.image_utils import PILImageResampling

from modeling_t2v2t.configuration_t2v2t import T2V2TConfig, T2V2TVisionConfig
from modeling_t2v2t.processing_t2v2t import T2V2TProcessor
from modeling_t2v2t import video_processing_t2v2t
from modeling_t2v2t.video_processing_t2v2t import T2V2TVideoProcessor, segment_middle_indices

SMALL = {"height": 16, "width": 16}  # keeps resizing cheap where the size itself is not under test
WORDS = ["a", "dog", "runs", "in", "the", "park", "cat", "sleeps"]


def colour_video(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(T, H, W, 3) uint8 video whose frame i is the constant grey 12 * i, so a frame's value tells its index."""
    return np.repeat(np.arange(num_frames, dtype=np.uint8)[:, None, None, None] * 12, height * width * 3).reshape(
        num_frames, height, width, 3
    )


def write_video(path: Path, frames: np.ndarray, codec: str = "libx264") -> Path:
    """Encode (T, H, W, 3) frames with PyAV; a keyframe every 4 frames so that seeking matters."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10, options={"g": "4"})
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def decode_all(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def frame_indices_of(pixel_values: torch.Tensor) -> list[int]:
    """Recover the source frame indices of a colour_video clip from normalised pixels (mean 0.5, std 0.5)."""
    grey = (pixel_values.mean(dim=(-1, -2, -3)) * 0.5 + 0.5) * 255  # (T,)
    return torch.round(grey / 12).int().tolist()


@pytest.fixture
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    # BertTokenizer(vocab_file=...) silently ignores the file in transformers v5; `vocab=` reads it.
    return BertTokenizer(vocab=str(vocab))


@pytest.fixture
def processor(tokenizer):
    return T2V2TProcessor(T2V2TVideoProcessor(size=SMALL), tokenizer, max_length=12)


# --- frame sampling -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "total, num, expected",
    [
        (20, 4, [2, 7, 12, 17]),
        (10, 4, [0, 3, 5, 8]),
        (4, 4, [0, 1, 2, 3]),
        (7, 1, [3]),
        (2, 4, [0, 1, 1, 1]),  # short video: last frame repeated
        (1, 3, [0, 0, 0]),
    ],
)
def test_segment_middle_indices(total, num, expected):
    assert segment_middle_indices(total, num).tolist() == expected


@pytest.mark.parametrize("total, num", [(0, 4), (5, 0), (5, -1)])
def test_segment_middle_indices_rejects_non_positive(total, num):
    with pytest.raises(ValueError, match="positive integer"):
        segment_middle_indices(total, num)


def test_sampling_picks_segment_middles_and_pads_short_videos():
    video_processor = T2V2TVideoProcessor(size=SMALL)
    pixels = video_processor([colour_video(20, 8, 8), colour_video(2, 8, 8)])["pixel_values_videos"]
    assert frame_indices_of(pixels[0]) == [2, 7, 12, 17]
    assert frame_indices_of(pixels[1]) == [0, 1, 1, 1]
    # num_frames per call overrides the default; do_sample_frames=False keeps every frame.
    assert frame_indices_of(video_processor(colour_video(20, 8, 8), num_frames=2)["pixel_values_videos"][0]) == [4, 14]
    all_frames = video_processor(colour_video(5, 8, 8), do_sample_frames=False)["pixel_values_videos"][0]
    assert frame_indices_of(all_frames) == [0, 1, 2, 3, 4]


# --- output format and normalisation --------------------------------------------------------------------------------


def test_defaults_shape_dtype_and_normalisation():
    video_processor = T2V2TVideoProcessor()
    assert video_processor.num_frames == T2V2TVisionConfig().num_frames
    values = (255, 128, 0, 128, 51, 128, 255, 128)  # frames 0, 2, 4, 6 (segment middles of 8) are sampled
    video = np.stack([np.full((30, 40, 3), value, np.uint8) for value in values])
    pixels = video_processor(video)["pixel_values_videos"]
    assert pixels.shape == (1, 4, 3, 224, 224) and pixels.dtype == torch.float32
    # 255 -> (1 - 0.5) / 0.5 = 1, 0 -> -1, 51 -> (0.2 - 0.5) / 0.5 = -0.6
    for frame, value in zip(pixels[0], [1.0, -1.0, -0.6, 1.0]):
        torch.testing.assert_close(frame, torch.full_like(frame, value))


def test_array_tensor_pil_and_batch_inputs_agree():
    video_processor = T2V2TVideoProcessor(size=SMALL)
    video = np.random.default_rng(0).integers(0, 256, (6, 20, 24, 3), dtype=np.uint8)
    expected = video_processor(video)["pixel_values_videos"]
    inputs = {
        "tensor (T, C, H, W)": torch.from_numpy(video).permute(0, 3, 1, 2),
        "list of PIL frames": [PIL.Image.fromarray(frame) for frame in video],
        "list of array frames": list(video),
    }
    for name, same_video in inputs.items():
        assert torch.equal(video_processor(same_video)["pixel_values_videos"], expected), name
    channels_first = np.ascontiguousarray(video.transpose(0, 3, 1, 2))
    pixels = video_processor(channels_first, input_data_format="channels_first")["pixel_values_videos"]
    assert torch.equal(pixels, expected)
    batch = video_processor(np.stack([video, video[::-1]]))["pixel_values_videos"]  # (B, T, H, W, C)
    assert batch.shape == (2, 4, 3, 16, 16)
    assert torch.equal(batch[:1], expected)
    assert torch.equal(batch[1:], video_processor(video[::-1].copy())["pixel_values_videos"])


def test_single_image_is_a_one_frame_video():
    video_processor = T2V2TVideoProcessor(size=SMALL)
    image = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    pixels = video_processor(image)["pixel_values_videos"]
    assert pixels.shape == (1, 4, 3, 16, 16)
    assert all(torch.equal(frame, pixels[0, 0]) for frame in pixels[0])
    assert torch.equal(video_processor(PIL.Image.fromarray(image))["pixel_values_videos"], pixels)
    assert torch.equal(video_processor(image[None])["pixel_values_videos"], pixels)


def test_grayscale_video_becomes_rgb():
    pixels = T2V2TVideoProcessor(size=SMALL)(np.full((4, 8, 8, 1), 255, np.uint8))["pixel_values_videos"]
    assert pixels.shape == (1, 4, 3, 16, 16)
    torch.testing.assert_close(pixels, torch.ones_like(pixels))


# --- files ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_video_file_matches_processing_its_decoded_frames(tmp_path, monkeypatch, codec):
    def no_sequential_decode(*args):
        raise AssertionError("seeking was asked for: no decoding in order")

    # The seeking path must give the same frames (auto mode picks it only when it decodes less than one pass).
    monkeypatch.setattr(video_processing_t2v2t, "_seeking_pays", lambda *args: True)
    monkeypatch.setattr(video_processing_t2v2t, "_decode_in_order", no_sequential_decode)
    video_processor = T2V2TVideoProcessor(size=SMALL)
    path = write_video(tmp_path / "clip.mp4", colour_video(20), codec)
    decoded = decode_all(path)
    assert len(decoded) == 20

    out = video_processor(path, return_metadata=True)
    pixels = out["pixel_values_videos"]
    assert out["video_metadata"][0].total_num_frames == 20
    assert out["video_metadata"][0].frames_indices == [2, 7, 12, 17]
    assert frame_indices_of(pixels[0]) == [2, 7, 12, 17]  # the right frames, not just the right count
    assert torch.equal(pixels, video_processor(decoded[[2, 7, 12, 17]], do_sample_frames=False)["pixel_values_videos"])
    # str and Path, single and batched, give the same frames.
    assert torch.equal(video_processor([str(path), path])["pixel_values_videos"], pixels.repeat(2, 1, 1, 1, 1))


def test_container_without_frame_count_decodes_in_order(tmp_path):
    video_processor = T2V2TVideoProcessor(size=SMALL)
    mkv = write_video(tmp_path / "clip.mkv", colour_video(20), "mpeg4")
    with av.open(str(mkv)) as container:
        assert container.streams.video[0].frames == 0  # Matroska stores no frame count: the fallback path runs
    pixels = video_processor(mkv)["pixel_values_videos"]
    expected = video_processor(decode_all(mkv)[[2, 7, 12, 17]], do_sample_frames=False)["pixel_values_videos"]
    assert torch.equal(pixels, expected)


def test_short_video_file_repeats_last_frame(tmp_path):
    path = write_video(tmp_path / "short.mp4", colour_video(3))
    out = T2V2TVideoProcessor(size=SMALL)(path, return_metadata=True)
    assert out["video_metadata"][0].frames_indices == [0, 1, 2, 2]
    assert frame_indices_of(out["pixel_values_videos"][0]) == [0, 1, 2, 2]


def test_png_path_is_a_one_frame_video(tmp_path):
    image = np.random.default_rng(2).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    PIL.Image.fromarray(image).save(tmp_path / "frame.png")
    video_processor = T2V2TVideoProcessor(size=SMALL)
    pixels = video_processor(tmp_path / "frame.png")["pixel_values_videos"]
    assert torch.equal(pixels, video_processor(image)["pixel_values_videos"])


# --- errors ---------------------------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        T2V2TVideoProcessor()(path)


@pytest.mark.parametrize(
    "name, content",
    [
        ("corrupt.mp4", np.random.default_rng(3).bytes(2000)),
        ("empty.mp4", b""),
        ("corrupt.png", b"not a png at all"),
    ],
)
def test_undecodable_file_raises_value_error_naming_the_path(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=name):
        T2V2TVideoProcessor()(tmp_path / name)


def test_zero_frame_video_raises_value_error(tmp_path):
    path = tmp_path / "no_frames.avi"
    with av.open(str(path), "w") as container:  # a valid container with a video stream but no frames
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    with pytest.raises(ValueError, match=r"no_frames\.avi: the video stream has 0 frames"):
        T2V2TVideoProcessor()(path)


@pytest.mark.parametrize(
    "videos, message",
    [
        (np.zeros((8, 8), np.uint8), r"videos must be a 4-D video .* shape \(8, 8\)"),
        (np.zeros((2, 2, 2, 2, 2, 3), np.uint8), r"shape \(2, 2, 2, 2, 2, 3\)"),
        (np.zeros((9, 8, 8, 2), np.uint8), r"videos\[0\] has frames of shape \(8, 8, 2\) with no channel axis"),
        ([np.zeros((4, 8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)], r"videos\[1\] must be .* shape \(8, 8\)"),
        ([], "empty list"),
    ],
)
def test_badly_shaped_input_raises_value_error_with_the_shape(videos, message):
    with pytest.raises(ValueError, match=message):
        T2V2TVideoProcessor()(videos)


# --- agreement with the model config --------------------------------------------------------------------------------


def test_from_vision_config_matches_config_and_check_compatible(caplog):
    vision_config = T2V2TVisionConfig(
        image_size=32, patch_size=16, num_frames=6, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64,
    )
    video_processor = T2V2TVideoProcessor.from_vision_config(vision_config, image_mean=[0.4, 0.4, 0.4])
    assert video_processor.num_frames == 6 and video_processor.output_size == (32, 32)
    assert video_processor.image_mean == (0.4, 0.4, 0.4)
    assert video_processor(colour_video(12, 8, 8))["pixel_values_videos"].shape == (1, 6, 3, 32, 32)
    video_processor.check_compatible(vision_config)
    video_processor.check_compatible(T2V2TConfig(vision_config=vision_config.to_dict()))

    with pytest.raises(ValueError, match="outputs 224x224 frames .* image_size=32"):
        T2V2TVideoProcessor().check_compatible(vision_config)
    with caplog.at_level(logging.WARNING):
        T2V2TVideoProcessor(num_frames=8, size={"height": 32, "width": 32}).check_compatible(vision_config)
    assert "num_frames=8" in caplog.text and "num_frames=6" in caplog.text


def test_from_image_processor_takes_normalisation(tmp_path):
    BeitImageProcessor(
        image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6], resample=PILImageResampling.BILINEAR
    ).save_pretrained(tmp_path)
    video_processor = T2V2TVideoProcessor.from_image_processor(tmp_path, num_frames=2)
    assert video_processor.image_mean == (0.1, 0.2, 0.3) and video_processor.image_std == (0.4, 0.5, 0.6)
    assert video_processor.resample == PILImageResampling.BILINEAR
    assert video_processor.num_frames == 2 and video_processor.output_size == (224, 224)
    pixels = video_processor(np.full((3, 8, 8, 3), 255, np.uint8))["pixel_values_videos"]
    torch.testing.assert_close(pixels[0, 0, :, 0, 0], torch.tensor([0.9 / 0.4, 0.8 / 0.5, 0.7 / 0.6]))


# --- processor ------------------------------------------------------------------------------------------------------


def test_processor_text_and_video(processor, tokenizer):
    batch = processor(text=["a dog runs in the park", "the cat sleeps"], videos=[colour_video(8, 8, 8)] * 2)
    assert set(batch) == set(processor.model_input_names) == {"input_ids", "attention_mask", "pixel_values_videos"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 12)
    assert batch["attention_mask"].sum(dim=1).tolist() == [8, 5]  # [CLS] + words + [SEP], then padding
    assert tokenizer.unk_token_id not in batch["input_ids"].tolist()[0]
    decoded = processor.batch_decode(batch["input_ids"], skip_special_tokens=True)
    assert decoded == ["a dog runs in the park", "the cat sleeps"]
    assert processor.decode(batch["input_ids"][1], skip_special_tokens=True) == "the cat sleeps"
    assert batch["pixel_values_videos"].shape == (2, 4, 3, 16, 16)

    long = processor(text="a dog " * 20, max_length=6)
    assert long["input_ids"].shape == (1, 6)  # truncated to the per-call max_length
    assert set(processor(text="a cat")) == {"input_ids", "attention_mask"}
    assert set(processor(videos=colour_video(8, 8, 8), num_frames=2)) == {"pixel_values_videos"}
    assert processor(videos=colour_video(8, 8, 8), num_frames=2)["pixel_values_videos"].shape[1] == 2


def test_processor_rejects_empty_captions_and_no_input(processor):
    with pytest.raises(ValueError, match=r"text\[1\] is empty"):
        processor(text=["a dog", "   "])
    with pytest.raises(ValueError, match=r"text\[0\] is empty"):
        processor(text="")
    with pytest.raises(ValueError, match="needs `text`, `videos` or both"):
        processor()
    with pytest.raises(ValueError, match="max_length"):
        T2V2TProcessor(processor.video_processor, processor.tokenizer, max_length=0)


def test_processor_save_load_round_trip(tmp_path, tokenizer):
    processor = T2V2TProcessor(
        T2V2TVideoProcessor(num_frames=6, size={"height": 32, "width": 32}), tokenizer, max_length=10
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["max_length"] == 10
    assert saved["video_processor"]["num_frames"] == 6
    assert saved["video_processor"]["size"] == {"height": 32, "width": 32}

    loaded = T2V2TProcessor.from_pretrained(tmp_path)
    assert loaded.max_length == 10 and loaded.video_processor.num_frames == 6
    inputs = {"text": ["a dog runs", "the cat sleeps in the park"], "videos": [colour_video(9, 8, 8)] * 2}
    expected, actual = processor(**inputs), loaded(**inputs)
    assert set(actual) == set(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_auto_classes_load_saved_processor(tmp_path, tokenizer):
    # `import modeling_t2v2t` may register these already; exist_ok makes registering again harmless.
    AutoVideoProcessor.register(T2V2TConfig, T2V2TVideoProcessor, exist_ok=True)
    AutoProcessor.register(T2V2TConfig, T2V2TProcessor, exist_ok=True)
    processor = T2V2TProcessor(T2V2TVideoProcessor(num_frames=3, size=SMALL), tokenizer, max_length=8)
    processor.save_pretrained(tmp_path)

    auto_processor = AutoProcessor.from_pretrained(tmp_path)
    auto_video_processor = AutoVideoProcessor.from_pretrained(tmp_path)
    assert type(auto_processor) is T2V2TProcessor and type(auto_video_processor) is T2V2TVideoProcessor
    assert auto_processor.max_length == 8 and auto_video_processor.num_frames == 3
    video = colour_video(9, 8, 8)
    expected = processor(videos=video)["pixel_values_videos"]
    assert torch.equal(auto_video_processor(video)["pixel_values_videos"], expected)
    assert torch.equal(auto_processor(text="a dog")["input_ids"], processor(text="a dog")["input_ids"])
