"""The built-in synthetic benchmark as a schema dataset, rendered on first use (see
`processing.synthetic.benchmark`; its annotations are VindLU JSON, read by `build_vindlu_json`)."""

import json

from ..synthetic.benchmark import DEFAULT_NUM_VIDEOS, SPLITS, ensure_benchmark
from .common import argument_error
from .vindlu import build_vindlu_json


def build_synthetic(split: str = "test", out_dir: str | None = None, num_videos: int = DEFAULT_NUM_VIDEOS,
                    seed: int = 0, paragraph: bool = False, num_val: int | None = None, num_test: int | None = None,
                    frames: int = 16, size: int = 64, fps: int = 8, workers: int = 2, progress: bool = True):
    """
    One split (`train`, `val` or `test`) of the synthetic benchmark with `num_videos` training videos and `seed`;
    `out_dir=None` uses a cache folder per settings (the benchmark is its own annotation location and video root).
    `paragraph=True` gives the paragraph variant. `num_val`, `num_test`, `frames`, `size`, `fps`, `workers` and
    `progress` go to `ensure_benchmark`. Returns `(dataset, skips)`.
    """
    if split not in SPLITS:
        # Checked before rendering: a typo should not cost a render.
        raise argument_error(build_synthetic, f"split={split!r} is not a split of the synthetic benchmark; choose "
                                              f"one of {sorted(SPLITS)}")
    benchmark = ensure_benchmark(out_dir, num_videos=num_videos, seed=seed, num_val=num_val, num_test=num_test,
                                 frames=frames, size=size, fps=fps, workers=workers, progress=progress)
    key = "paragraph_annotations" if paragraph else "annotations"
    return build_vindlu_json(benchmark[key][split], benchmark["video_root"], split=split, paragraph=paragraph)


def synthetic_families(split: str = "train", out_dir: str | None = None, num_videos: int = DEFAULT_NUM_VIDEOS,
                       seed: int = 0, num_val: int | None = None, num_test: int | None = None, frames: int = 16,
                       size: int = 64, fps: int = 8, workers: int = 2, progress: bool = True, **_) -> dict[str, str]:
    """`{video_id: family id}` for one split of the benchmark `build_synthetic` with the same arguments builds
    (families: a base video and its one-factor variants, the benchmark's hard negatives). Keys are the dataset's
    `video_id`s (the annotations' relative video paths, e.g. `videos/train/train_00000.mp4`)."""
    benchmark = ensure_benchmark(out_dir, num_videos=num_videos, seed=seed, num_val=num_val, num_test=num_test,
                                 frames=frames, size=size, fps=fps, workers=workers, progress=progress)
    with open(benchmark["metadata"], encoding="utf-8") as handle:
        videos = json.load(handle)["videos"]
    return {video["video"]: video["family"] for video in videos if video["split"] == split}


__all__ = ["build_synthetic", "synthetic_families"]
