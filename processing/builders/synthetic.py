"""The built-in synthetic benchmark as a schema dataset, rendered on first use (see
`processing.synthetic.benchmark`; its annotations are VindLU JSON, read by `build_vindlu_json`)."""

from ..synthetic.benchmark import DEFAULT_NUM_VIDEOS, ensure_benchmark
from .vindlu import build_vindlu_json


def build_synthetic(split: str = "test", out_dir: str | None = None, num_videos: int = DEFAULT_NUM_VIDEOS,
                    seed: int = 0, paragraph: bool = False, **render_kwargs):
    """
    One split (`train`, `val` or `test`) of the synthetic benchmark with `num_videos` training videos and `seed`;
    `out_dir=None` uses a cache folder per settings. `paragraph=True` gives the paragraph variant.
    `render_kwargs` go to `ensure_benchmark` (e.g. `num_test`, `frames`, `workers`). Returns `(dataset, skips)`.
    """
    benchmark = ensure_benchmark(out_dir, num_videos=num_videos, seed=seed, **render_kwargs)
    key = "paragraph_annotations" if paragraph else "annotations"
    if split not in benchmark[key]:
        raise ValueError(f"split={split!r} is not a split of the synthetic benchmark; choose one of "
                         f"{sorted(benchmark[key])}.")
    return build_vindlu_json(benchmark[key][split], benchmark["video_root"], split=split, paragraph=paragraph)


__all__ = ["build_synthetic"]
