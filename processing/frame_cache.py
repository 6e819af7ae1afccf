"""Whole decoded videos kept in memory, so a small training set seen for many epochs is decoded once.

Training samples a new random frame per segment every time a clip is seen, so a clip cannot be cached; the video's
frames can. For short, small videos (the synthetic benchmark: 16 frames of 64x64, 196 KB each) decoding every frame
once and sampling from memory afterwards removes most of the data-loading work of a CPU run; long or large videos
(real datasets) are never cached and go through `decode_clip`, which decodes only the sampled frames.

Each data-loading process has its own cache: with DataLoader workers, keep them alive between epochs
(`dataloader_persistent_workers=True`) or the cache is rebuilt every epoch.
"""

import logging
import os
from collections import OrderedDict

import numpy as np

from .decoding import decode_clip, probe_video, sample_frame_indices

logger = logging.getLogger(__name__)


class DecodedVideoCache:
    """
    An LRU cache of fully decoded videos, bounded in bytes.

    Args:
        max_bytes: memory the cached frames may take (uint8 RGB); least recently used videos are dropped past it.
        max_video_bytes: a video larger than this decoded (frames x height x width x 3) is not cached, so one long
            video cannot evict everything else; defaults to an eighth of `max_bytes`.
        backend: decoding backend (see `decode_clip`).

    `clip(path, num_frames, mode, rng)` returns exactly what `decode_clip(path, num_frames, mode, rng=rng)` returns
    for a whole file: the same frame indices are drawn from the same generator.
    """

    def __init__(self, max_bytes: int, max_video_bytes: int | None = None, backend: str = "pyav"):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self.max_video_bytes = max_bytes // 8 if max_video_bytes is None else max_video_bytes
        self.backend = backend
        self._videos: OrderedDict[str, np.ndarray] = OrderedDict()
        self._not_cached: set[str] = set()  # too large: decode only the sampled frames
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._videos)

    def _frames(self, path: str) -> np.ndarray | None:
        frames = self._videos.get(path)
        if frames is not None:
            self.hits += 1
            self._videos.move_to_end(path)
            return frames
        if path in self._not_cached:
            return None
        self.misses += 1
        info = probe_video(path)
        if info.num_frames * info.height * info.width * 3 > self.max_video_bytes:
            self._not_cached.add(path)
            return None
        # Every frame: num_frames equal segments of one frame each, the "middle" of each is the frame itself.
        frames = decode_clip(path, info.num_frames, mode="middle", backend=self.backend)
        self._videos[path] = frames
        self.nbytes += frames.nbytes
        while self.nbytes > self.max_bytes and len(self._videos) > 1:
            _, dropped = self._videos.popitem(last=False)
            self.nbytes -= dropped.nbytes
        return frames

    def clip(self, path: str | os.PathLike, num_frames: int, mode: str = "middle",
             rng: np.random.Generator | int | None = None) -> np.ndarray:
        """`num_frames` uint8 RGB frames (num_frames, height, width, 3) sampled as `decode_clip` samples them."""
        path = os.fspath(path)
        frames = self._frames(path)
        if frames is None:
            return decode_clip(path, num_frames, mode=mode, backend=self.backend, rng=rng)
        return frames[sample_frame_indices(len(frames), num_frames, mode, rng)]


__all__ = ["DecodedVideoCache"]
