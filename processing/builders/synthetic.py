"""The built-in synthetic benchmark as a schema dataset, rendered on first use (see
`processing.synthetic.benchmark`; its annotations are VindLU JSON, read by `build_vindlu_json`).

Evaluation splits (val, test) also carry the benchmark's hard-negative families from its `metadata.json`, as the
optional columns of `processing.schema.FAMILY_COLUMNS`: `family` (family id), `family_factor` (the factor that sets
the video apart from its family's base: colour, shape, size, motion or order; "" for the base) and
`caption_partial` (per caption, whether it describes only one of two events). Retrieval evaluation reports a win
rate per family from them (`modeling_t2v2t.retrieval.families`). The training split keeps the plain schema, so it
concatenates with any other corpus.
"""

import json

from ..schema import FAMILY_COLUMNS, AnnotationError
from ..synthetic.benchmark import DEFAULT_NUM_VIDEOS, SPLITS, ensure_benchmark
from ..synthetic.contrast_captions import CONTRAST_FACTORS, contrast_captions
from ..synthetic.scenes import FACTORS
from .common import argument_error
from .vindlu import build_vindlu_json


def build_synthetic(split: str = "test", out_dir: str | None = None, num_videos: int = DEFAULT_NUM_VIDEOS,
                    seed: int = 0, paragraph: bool = False, num_val: int | None = None, num_test: int | None = None,
                    frames: int = 16, size: int = 64, fps: int = 8, workers: int = 2, progress: bool = True,
                    family_labels: bool | None = None):
    """
    One split (`train`, `val` or `test`) of the synthetic benchmark with `num_videos` training videos and `seed`;
    `out_dir=None` uses a cache folder per settings (the benchmark is its own annotation location and video root).
    `paragraph=True` gives the paragraph variant. `num_val`, `num_test`, `frames`, `size`, `fps`, `workers` and
    `progress` go to `ensure_benchmark`. `family_labels` adds the family columns (see the module docstring);
    `None` adds them to val and test only. Returns `(dataset, skips)`.
    """
    if split not in SPLITS:
        # Checked before rendering: a typo should not cost a render.
        raise argument_error(build_synthetic, f"split={split!r} is not a split of the synthetic benchmark; choose "
                                              f"one of {sorted(SPLITS)}")
    benchmark = ensure_benchmark(out_dir, num_videos=num_videos, seed=seed, num_val=num_val, num_test=num_test,
                                 frames=frames, size=size, fps=fps, workers=workers, progress=progress)
    key = "paragraph_annotations" if paragraph else "annotations"
    dataset, skips = build_vindlu_json(benchmark[key][split], benchmark["video_root"], split=split,
                                       paragraph=paragraph)
    if family_labels or (family_labels is None and split != "train"):
        dataset = add_family_columns(dataset, benchmark["metadata"], paragraph)
    return dataset, skips


def split_metadata(split: str = "train", out_dir: str | None = None, num_videos: int = DEFAULT_NUM_VIDEOS,
                   seed: int = 0, num_val: int | None = None, num_test: int | None = None, frames: int = 16,
                   size: int = 64, fps: int = 8, workers: int = 2, progress: bool = True, **_) -> list[dict]:
    """The `metadata.json` entries of one split's videos, for the benchmark `build_synthetic` with the same arguments
    builds (rendered on first use). Each has `video` (the dataset's `video_id`: the annotations' relative video
    path, e.g. `videos/train/train_00000.mp4`), `family`, `base` and `factor`, among others."""
    benchmark = ensure_benchmark(out_dir, num_videos=num_videos, seed=seed, num_val=num_val, num_test=num_test,
                                 frames=frames, size=size, fps=fps, workers=workers, progress=progress)
    with open(benchmark["metadata"], encoding="utf-8") as handle:
        return [video for video in json.load(handle)["videos"] if video["split"] == split]


def synthetic_families(split: str = "train", **benchmark_kwargs) -> dict[str, str]:
    """`{video_id: family id}` for one split (families: a base video and its one-factor variants, the benchmark's
    hard negatives); `benchmark_kwargs` as `split_metadata`'s."""
    return {video["video"]: video["family"] for video in split_metadata(split, **benchmark_kwargs)}


def synthetic_twins(factors, split: str = "train", **benchmark_kwargs) -> dict[str, set[str]]:
    """`{video_id: video_ids of its twins}` for one split: a variant whose factor is in `factors` (e.g. `("motion",
    "order")`: the same scene with its motion reversed or its two events swapped) and its family's base are each
    other's twins, so each is a labelled hard negative of the other's captions. Videos without twins are left out.
    `benchmark_kwargs` as `split_metadata`'s."""
    unknown = sorted(set(factors) - set(FACTORS))
    if unknown or not factors:
        raise ValueError(f"synthetic_twins: factors {list(factors)!r} must be a non-empty list drawn from {FACTORS}"
                         + (f" ({unknown} are not factors)." if unknown else "."))
    videos = split_metadata(split, **benchmark_kwargs)
    path_of = {video["video_id"]: video["video"] for video in videos}
    twins: dict[str, set[str]] = {}
    for video in videos:
        if video["factor"] in factors:
            base = path_of[video["base"]]
            twins.setdefault(video["video"], set()).add(base)
            twins.setdefault(base, set()).add(video["video"])
    return twins


def synthetic_contrast_captions(factors, split: str = "train", **benchmark_kwargs) -> dict[str, dict[str, list[str]]]:
    """`{video_id: {caption: its contrast captions}}` for one split: each caption rewritten to be false of its video
    in one of `factors` (`"motion"`: an action reversed, `"order"`: the two events swapped; see
    `processing.synthetic.contrast_captions`). Captions without a contrast are left out. `benchmark_kwargs` as
    `split_metadata`'s."""
    unknown = sorted(set(factors) - set(CONTRAST_FACTORS))
    if unknown or not factors:
        raise ValueError(f"synthetic_contrast_captions: factors {list(factors)!r} must be a non-empty list drawn from "
                         f"{CONTRAST_FACTORS}" + (f" ({unknown} are not contrast factors)." if unknown else "."))
    contrasts: dict[str, dict[str, list[str]]] = {}
    for video in split_metadata(split, **benchmark_kwargs):
        for caption in video["captions"]:
            found = contrast_captions(video["scene"], caption, factors)
            if found:
                contrasts.setdefault(video["video"], {})[caption["text"]] = found
    return contrasts


def add_family_columns(dataset, metadata_file: str, paragraph: bool = False):
    """The dataset with the `FAMILY_COLUMNS` of each of its videos, read from the benchmark's `metadata.json`
    (rows are matched by their relative video path, captions by their text; a paragraph is never partial)."""
    with open(metadata_file, encoding="utf-8") as handle:
        videos = {video["video"]: video for video in json.load(handle)["videos"]}
    columns = {name: [] for name in FAMILY_COLUMNS}
    for video_id, captions in zip(dataset["video_id"], dataset["captions"]):
        video = videos.get(video_id)
        if video is None:
            raise AnnotationError(f"{metadata_file}: no metadata for video {video_id!r}.")
        partial = {caption["text"]: caption["partial"] for caption in video["captions"]}
        missing = [caption for caption in captions if caption not in partial]
        if missing and not paragraph:
            raise AnnotationError(f"{metadata_file}: video {video_id!r} has no metadata for caption {missing[0]!r}.")
        columns["family"].append(video["family"])
        columns["family_factor"].append(video["factor"] or "")
        columns["caption_partial"].append([False if paragraph else partial[caption] for caption in captions])
    for name, values in columns.items():
        dataset = dataset.add_column(name, values)
    return dataset


__all__ = ["build_synthetic", "add_family_columns", "synthetic_families", "synthetic_twins",
           "synthetic_contrast_captions", "split_metadata"]
