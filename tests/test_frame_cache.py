"""DecodedVideoCache: the same frames as decode_clip, each video decoded once, memory bounded."""

import logging

import numpy as np
import pytest
import torch
from tiny_models import tiny_tokenizer
from tiny_media import write_grey_video

from modeling_t2v2t import T2V2TProcessor, T2V2TVideoProcessor
from processing.batching import VideoTextCollator
from processing.decoding import VideoDecodeError, decode_clip
from processing.frame_cache import DecodedVideoCache


@pytest.fixture
def videos(tmp_path):
    return [str(write_grey_video(tmp_path / f"clip{index}.mp4", num_frames=12 + 4 * index, height=16, width=16))
            for index in range(3)]


def test_cached_clips_equal_decode_clip_for_the_same_generator(videos):
    cache = DecodedVideoCache(max_bytes=2**20)
    for path in videos:
        for seed in range(3):
            expected = decode_clip(path, 4, mode="random", rng=np.random.default_rng(seed))
            np.testing.assert_array_equal(cache.clip(path, 4, mode="random", rng=np.random.default_rng(seed)),
                                          expected)
        np.testing.assert_array_equal(cache.clip(path, 5, mode="middle"), decode_clip(path, 5, mode="middle"))
    assert len(cache) == 3 and cache.misses == 3 and cache.hits == 3 * 4 - 3


def test_the_cache_stays_within_its_budget_and_skips_videos_too_large(videos):
    one_video = 12 * 16 * 16 * 3  # the smallest video decoded
    cache = DecodedVideoCache(max_bytes=2 * 20 * 16 * 16 * 3, max_video_bytes=16 * 16 * 16 * 3)
    for path in videos:
        cache.clip(path, 2)
    # videos 0 (12 frames) and 1 (16 frames) fit the per-video limit; video 2 (20 frames) is decoded each time
    assert len(cache) == 2 and cache.nbytes == one_video + 16 * 16 * 16 * 3
    np.testing.assert_array_equal(cache.clip(videos[2], 3), decode_clip(videos[2], 3))
    small = DecodedVideoCache(max_bytes=one_video + 1, max_video_bytes=10**6)
    for path in videos:
        small.clip(path, 2)
    assert len(small) == 1 and small.nbytes == 20 * 16 * 16 * 3  # least recently used ones dropped


def test_bad_arguments_and_files_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        DecodedVideoCache(max_bytes=0)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        DecodedVideoCache(max_bytes=2**20).clip(str(broken), 4)


def test_collator_with_a_cache_batches_the_same_clips(videos, tmp_path, caplog):
    processor = T2V2TProcessor(T2V2TVideoProcessor(num_frames=4, size={"height": 16, "width": 16}),
                               tiny_tokenizer(tmp_path / "tok"), max_length=8)
    rows = [{"video": path, "caption": "a grey clip", "video_index": index, "media_type": "video"}
            for index, path in enumerate(videos)]
    torch.manual_seed(0)
    plain = [VideoTextCollator(processor)(rows)["pixel_values_videos"]]
    torch.manual_seed(0)
    cached_collator = VideoTextCollator(processor, cache_bytes=2**20)
    cached = [cached_collator(rows)["pixel_values_videos"]]
    assert torch.equal(plain[0], cached[0])
    cached_collator(rows)
    assert cached_collator._cache.misses == 3 and cached_collator._cache.hits == 3
    # a bad file is still counted and skipped, not cached
    rows.append({"video": str(tmp_path / "missing.mp4"), "caption": "gone", "video_index": 9, "media_type": "video"})
    skipping = VideoTextCollator(processor, cache_bytes=2**20, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        assert skipping(rows)["video_ids"].tolist() == [0, 1, 2]
    assert skipping.num_skipped == 1 and "missing.mp4" in caplog.text
    with pytest.raises(ValueError, match="cache_bytes must be >= 0"):
        VideoTextCollator(processor, cache_bytes=-1)
