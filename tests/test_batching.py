"""Caption cleaning, caption pairs with video indices, and the lazily decoding collator (DataLoader workers,
training vs evaluation sampling, counted skips)."""

import logging

import numpy as np
import pytest
import torch
from tiny_models import tiny_tokenizer
from tiny_media import write_grey_video

from modeling_t2v2t import T2V2TProcessor, T2V2TVideoProcessor
from processing.batching import VideoTextCollator, caption_pairs
from processing.decoding import VideoDecodeError
from processing.schema import build_dataset, make_record
from processing.text_cleaning import clean_caption


def test_clean_caption_follows_vindlu():
    assert clean_caption("A Red-Square moves LEFT, then up!") == "a red square moves left then up"
    assert clean_caption("<person> opens a box / door;  (fast)") == "person opens a box door fast"
    assert clean_caption("one two three four", max_words=2) == "one two"
    with pytest.raises(TypeError, match="must be a string"):
        clean_caption(None)


@pytest.fixture
def dataset(tmp_path):
    records = []
    for index, captions in enumerate([["a red square moves left", "red square goes left"], ["a blue circle spins"],
                                      ["a green square moves up", "green box rises", "it goes up"]]):
        path = write_grey_video(tmp_path / f"clip{index}.mp4", num_frames=24)
        records.append((make_record(str(path), captions, f"clip{index}", "train"), f"entry {index}"))
    return build_dataset(records)[0]


@pytest.fixture
def processor(tmp_path):
    video_processor = T2V2TVideoProcessor(num_frames=4, size={"height": 32, "width": 32})
    return T2V2TProcessor(video_processor, tiny_tokenizer(tmp_path / "tok"), max_length=12)


def test_caption_pairs_keep_the_video_index(dataset):
    pairs = caption_pairs(dataset)
    assert len(pairs) == 6
    assert pairs["video_index"] == [0, 0, 1, 2, 2, 2]
    assert pairs["caption"][1] == "red square goes left" and pairs["video_id"][4] == "clip2"


def test_collator_batches_through_a_dataloader_with_workers(dataset, processor):
    pairs = caption_pairs(dataset)
    collator = VideoTextCollator(processor, train=True)
    loader = torch.utils.data.DataLoader(pairs, batch_size=3, collate_fn=collator, num_workers=2)
    batches = list(loader)
    assert [b["pixel_values_videos"].shape for b in batches] == [(3, 4, 3, 32, 32)] * 2
    assert torch.equal(torch.cat([b["video_ids"] for b in batches]), torch.tensor([0, 0, 1, 2, 2, 2]))
    # padded to the batch's longest caption (its last position is a real token), not to max_length=12
    assert batches[0]["input_ids"].shape == (3, 7) and batches[0]["return_loss"] is True
    assert bool(batches[0]["attention_mask"][:, -1].any())
    words = processor.tokenizer.convert_ids_to_tokens(batches[0]["input_ids"][0])
    assert words[:6] == ["[CLS]", "a", "red", "square", "moves", "left"]


def sampled_frames(batch) -> list[int]:
    """write_grey_video frame i is grey 10*i: recover which frames were sampled (normalised with mean/std 0.5)."""
    grey = (batch["pixel_values_videos"][0].mean(dim=(1, 2, 3)) * 0.5 + 0.5) * 255
    return torch.round(grey / 10).int().tolist()


def test_evaluation_takes_segment_middles_and_training_varies(dataset, processor):
    pairs = caption_pairs(dataset)
    row = [pairs[0]]
    evaluation = VideoTextCollator(processor, train=False, return_loss=False)
    assert sampled_frames(evaluation(row)) == [2, 8, 14, 20]  # middles of 4 segments of 24 frames
    assert "return_loss" not in evaluation(row)
    torch.manual_seed(0)
    training = VideoTextCollator(processor, train=True)
    draws = [sampled_frames(training(row)) for _ in range(6)]
    for draw in draws:
        assert all(6 * s <= frame < 6 * (s + 1) for s, frame in enumerate(draw))  # one frame inside each segment
    assert len({tuple(draw) for draw in draws}) > 1


def test_bad_videos_raise_or_are_counted(dataset, processor, tmp_path, caplog):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    rows = [caption_pairs(dataset)[0], {"video": str(broken), "caption": "a clip", "video_index": 9,
                                        "media_type": "video"}]
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        VideoTextCollator(processor)(rows)
    collator = VideoTextCollator(processor, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        batch = collator(rows)
    assert batch["video_ids"].tolist() == [0] and collator.num_skipped == 1 and batch["num_skipped"].item() == 1
    assert "broken.mp4" in caplog.text
    # A batch with no good clip holds only its skip count; the trainer skips that step.
    empty = collator(rows[1:])
    assert list(empty) == ["num_skipped"] and empty["num_skipped"].item() == 1 and collator.num_skipped == 2


def test_images_are_one_frame_clips_and_batches_must_not_mix(processor, tmp_path):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 40, 3), 200, dtype=np.uint8)).save(image)
    row = {"video": str(image), "caption": "a grey photo", "video_index": 0, "media_type": "image"}
    batch = VideoTextCollator(processor)([row])
    assert batch["pixel_values_videos"].shape == (1, 1, 3, 32, 32)
    video_row = {**row, "video": str(write_grey_video(tmp_path / "v.mp4", 8)), "media_type": "video"}
    with pytest.raises(ValueError, match="mixes images and videos"):
        VideoTextCollator(processor)([row, video_row])
