"""The one schema every dataset builder returns: one row per video (or image) with all of its captions.

| column | type | meaning |
|---|---|---|
| `video` | string | absolute path of the video (or image) file |
| `captions` | list of string | its captions; paragraph datasets hold one string, the sentences joined |
| `video_id` | string | unique id of the video within the dataset |
| `timestamps` | list of [start, end] seconds | moments the captions describe, if the corpus gives them (else empty) |
| `split` | string | `train`, `val` or `test` (or the corpus's own split name) |
| `media_type` | string | `video`, or `image` for image-caption corpora (1-frame videos) |

Optional columns (`FAMILY_COLUMNS`), only where a builder knows them (the synthetic benchmark's val and test): the
video's hard-negative `family` id, its `family_factor` (what sets it apart from the family's base; "" for the base)
and `caption_partial` (list of bool, aligned with `captions`). Evaluation reports per-family win rates from them.
"""

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import datasets

from .text_cleaning import clean_caption

logger = logging.getLogger(__name__)

FEATURES = datasets.Features(
    {
        "video": datasets.Value("string"),
        "captions": datasets.Sequence(datasets.Value("string")),
        "video_id": datasets.Value("string"),
        "timestamps": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=2)),
        "split": datasets.Value("string"),
        "media_type": datasets.Value("string"),
    }
)
MEDIA_TYPES = ("video", "image")
FAMILY_COLUMNS = ("family", "family_factor", "caption_partial")  # mirrored in modeling_t2v2t.retrieval.families


class AnnotationError(ValueError):
    """A bad annotation entry or video reference; the message names the file and the problem."""


class EmptySplitError(AnnotationError):
    """A builder found no usable row for its split; `report` holds what was skipped on the way."""

    def __init__(self, message: str, report: "SkipReport"):
        super().__init__(message)
        self.report = report


@dataclass
class SkipReport:
    """Items left out of a dataset when building with `skip_bad=True`: counted, logged, never silent."""

    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)

    def add(self, what: str, why: str) -> None:
        self.skipped.append((what, why))
        logger.warning("Skipped %s: %s", what, why)

    def __len__(self) -> int:
        return len(self.skipped)


def make_record(video: str, captions, video_id: str, split: str, timestamps=None, media_type: str = "video") -> dict:
    """One schema row; captions may be a string or a list of strings."""
    if isinstance(captions, str):
        captions = [captions]
    return {
        "video": os.path.abspath(video),
        "captions": list(captions),
        "video_id": str(video_id),
        "timestamps": [[float(start), float(end)] for start, end in (timestamps or [])],
        "split": split,
        "media_type": media_type,
    }


def check_record(record: dict, source: str, check_files: bool = True) -> None:
    """Raises `AnnotationError` naming `source` (the annotation file and entry) if the record is unusable."""
    if not record["captions"]:
        raise AnnotationError(f"{source}: video {record['video_id']!r} has no caption.")
    for index, caption in enumerate(record["captions"]):
        if not isinstance(caption, str) or not caption.strip():
            raise AnnotationError(f"{source}: video {record['video_id']!r} has an empty caption (caption {index}).")
        if not clean_caption(caption):
            raise AnnotationError(f"{source}: video {record['video_id']!r} has an empty caption after cleaning "
                                  f"(caption {index}: {caption!r:.60}).")
    if record["media_type"] not in MEDIA_TYPES:
        raise AnnotationError(f"{source}: media_type {record['media_type']!r} is not one of {MEDIA_TYPES}.")
    if check_files and not os.path.isfile(record["video"]):
        raise AnnotationError(f"{source}: video file not found: {record['video']}")


def build_dataset(
    records: Iterable[tuple[dict, str]], skip_bad: bool = False, check_files: bool = True
) -> tuple[datasets.Dataset, SkipReport]:
    """
    A `datasets.Dataset` in the schema from `(record, source)` pairs, `source` naming where the record came from
    (e.g. `"MSRVTT_data.json, entry 12"`). A bad record raises `AnnotationError`, or with `skip_bad` is counted
    in the returned `SkipReport` and logged. Duplicate video ids raise: they would corrupt multi-positive VTC.
    """
    report, rows, seen = SkipReport(), [], {}
    for record, source in records:
        try:
            check_record(record, source, check_files)
            if record["video_id"] in seen:
                raise AnnotationError(
                    f"{source}: video id {record['video_id']!r} repeats {seen[record['video_id']]}."
                )
        except AnnotationError as error:
            if not skip_bad:
                raise
            report.add(source, str(error))
            continue
        seen[record["video_id"]] = source
        rows.append(record)
    if report:
        logger.warning("Skipped %d of %d items (see the warnings above).", len(report), len(rows) + len(report))
    dataset = datasets.Dataset.from_list(rows, features=FEATURES) if rows else empty_dataset()
    return dataset, report


def empty_dataset() -> datasets.Dataset:
    return datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)


def read_text_file(path: str | os.PathLike) -> str:
    """An annotation file as text; a missing or non-UTF-8 file raises an error naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path} is not valid UTF-8 text ({error.reason} at byte {error.start}).") from error
