"""Helpers shared by the dataset builders: reading JSON/CSV annotation files with errors that name the file and
the entry, validating entries, grouping the captions of a video, and finding video files on disk.

Every builder follows the same three steps:

1. parse the annotation file entry by entry (`load_json` / `read_csv_rows`, then `require` / `caption_list`),
   inside `skipping(...)` so that with `skip_bad=True` a bad entry becomes a counted skip instead of an error;
2. add each entry's captions to a `VideoGroups` (one row per video, whatever the file's layout), which refuses media
   paths outside the video root unless the builder was asked to allow them;
3. `finish(...)`: resolve each video's file and build the `datasets.Dataset` through `processing.schema`; a split
   that ends up with no rows raises `EmptySplitError` saying what was read, skipped and filtered out.

Arguments shared by the builders (where the format has them): `split`, the annotation location (`annotation_file`,
or `annotation_dir` where the corpus names its files by split), `video_root`, `skip_bad`, `check_files`,
`allow_outside_root`.
"""

import contextlib
import csv
import inspect
import io
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..schema import AnnotationError, EmptySplitError, SkipReport, build_dataset, make_record, read_text_file
from ..text_cleaning import clean_caption

logger = logging.getLogger(__name__)

# Tried in this order when a corpus's videos may have been re-encoded (CLIP4Clip falls back from .mp4 to .webm).
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".wmv", ".3gp", ".flv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def load_json(path: str | os.PathLike):
    """Parsed JSON of an annotation file; bad JSON raises `AnnotationError` with the file, line and column."""
    path = os.fspath(path)
    text = read_text_file(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise AnnotationError(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}."
        ) from error


def read_csv_rows(
    path: str | os.PathLike, required: Sequence[str], delimiter: str | None = None
) -> Iterator[tuple[int, dict]]:
    """
    `(line number, row)` pairs of a CSV/TSV file with a header. The delimiter is guessed from the header
    (comma, tab or semicolon: copies of the MSR-VTT csv files circulate with all three) unless given.
    A header without the `required` columns raises `AnnotationError` naming the columns it has.
    """
    path = os.fspath(path)
    text = read_text_file(path)
    header = text.split("\n", 1)[0]
    if delimiter is None:
        delimiter = max((",", "\t", ";"), key=header.count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = [name.strip() for name in (reader.fieldnames or [])]
    missing = [name for name in required if name not in columns]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {missing}; the header has {columns}.")
    reader.fieldnames = columns
    for row in reader:
        # The row's (last) line in the file, the header being line 1: what an editor shows.
        yield reader.line_num, row


def entry_source(path: str | os.PathLike, index, what: str = "entry", detail: str | None = None) -> str:
    """How errors name an entry, e.g. `"train_data.json, entry 12 (annotation_id 31171)"`."""
    source = f"{os.fspath(path)}, {what} {index}"
    return f"{source} ({detail})" if detail else source


def require(entry, key: str, kind: type | tuple[type, ...] | None, source: str):
    """`entry[key]`, raising `AnnotationError` naming `source` if the entry is not an object, lacks the key,
    or the value is not of `kind`."""
    if not isinstance(entry, dict):
        raise AnnotationError(f"{source}: expected an object, got {type(entry).__name__}.")
    if key not in entry:
        raise AnnotationError(f"{source}: missing key {key!r} (keys: {sorted(entry)}).")
    value = entry[key]
    if kind is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise AnnotationError(f"{source}: {key!r} must be {names}, got {type(value).__name__}: {value!r:.80}.")
    return value


def caption_list(value, source: str, key: str = "caption") -> list[str]:
    """A caption field (a string or a list of strings) as a list of stripped, non-empty strings."""
    captions = [value] if isinstance(value, str) else value
    if not isinstance(captions, list):
        raise AnnotationError(f"{source}: {key!r} must be a string or a list of strings, got {type(value).__name__}.")
    if not captions:
        raise AnnotationError(f"{source}: {key!r} is an empty list.")
    cleaned = []
    for index, caption in enumerate(captions):
        where = key if isinstance(value, str) else f"{key}[{index}]"
        if not isinstance(caption, str):
            raise AnnotationError(f"{source}: {where} must be a string, got {type(caption).__name__}.")
        if not caption.strip():
            raise AnnotationError(f"{source}: empty caption in {where!r}.")
        # Training and evaluation tokenise the cleaned caption; one with no words ("...") would crash the collator.
        if not clean_caption(caption):
            raise AnnotationError(f"{source}: empty caption after cleaning in {where!r} ({caption.strip()!r:.60}): "
                                  "it has no words once punctuation is removed.")
        cleaned.append(caption.strip())
    return cleaned


def time_span(value, source: str, key: str = "timestamps") -> tuple[float, float]:
    """A `[start, end]` pair of numbers."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in value)
    ):
        raise AnnotationError(f"{source}: each of {key!r} must be a [start, end] pair of numbers, got {value!r}.")
    return float(value[0]), float(value[1])


def describe_arguments(builder: Callable) -> str:
    """The arguments of a builder as an error message lists them: `annotation_file, video_root, split=None, ...`."""
    parts = []
    for name, parameter in inspect.signature(builder).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        parts.append(name if parameter.default is parameter.empty else f"{name}={parameter.default!r}")
    return ", ".join(parts)


def argument_error(builder: Callable, problem: str, name: str | None = None) -> ValueError:
    """A `ValueError` naming the builder (and its registry `name`), the problem with its arguments, and every
    argument it takes."""
    who = f"Dataset builder {name!r} ({builder.__name__})" if name else builder.__name__
    return ValueError(f"{who}: {problem}. Valid arguments: {describe_arguments(builder)}.")


def annotation_path(builder: Callable, annotation_file, annotation_dir, split: str | None, file_name: str) -> str:
    """
    The annotation file of a corpus that names its files by split: `annotation_file` as given, or `annotation_dir`
    joined with `file_name` formatted with the split (e.g. `"{split}.json"` -> `val_1.json`). Exactly one of the
    two must be given.
    """
    if (annotation_file is None) == (annotation_dir is None):
        raise argument_error(builder, "give exactly one of `annotation_file` or `annotation_dir` (with `split`), "
                                      f"got annotation_file={annotation_file!r}, annotation_dir={annotation_dir!r}")
    if annotation_file is not None:
        return os.fspath(annotation_file)
    if not split:
        raise argument_error(builder, f"`annotation_dir` needs `split` to find the file ({file_name})")
    return os.path.join(os.fspath(annotation_dir), file_name.format(split=split))


def require_video_root(builder: Callable, video_root) -> str:
    if video_root is None:
        raise argument_error(builder, "missing required argument `video_root` (the folder holding the media files)")
    return os.fspath(video_root)


def time_span_within(span: tuple[float, float], duration: float | None, source: str,
                     key: str = "timestamps") -> tuple[tuple[float, float], bool]:
    """
    A `[start, end]` moment checked against the video: `0 <= start <= end` and, when `duration` is known,
    `start <= duration`. An end past the duration is clipped to it (ActivityNet Captions has a few ends past the
    duration it states). Returns the span and whether it was clipped.
    """
    start, end = span
    if not (math.isfinite(start) and math.isfinite(end)):
        raise AnnotationError(f"{source}: each of {key!r} must be finite numbers, got [{start}, {end}].")
    if start < 0 or start > end:
        raise AnnotationError(f"{source}: each of {key!r} must satisfy 0 <= start <= end, got [{start}, {end}].")
    if duration is not None:
        if start > duration:
            raise AnnotationError(f"{source}: moment [{start}, {end}] in {key!r} starts after the video's duration "
                                  f"({duration} s).")
        if end > duration:
            return (start, float(duration)), True
    return span, False


def join_paragraph(sentences: Sequence[str]) -> str:
    """Paragraph retrieval (VindLU, CLIP4Clip on DiDeMo and ActivityNet): the sentences joined with a space."""
    return " ".join(sentence.strip() for sentence in sentences)


@contextlib.contextmanager
def skipping(report: SkipReport, skip_bad: bool, source: str):
    """Runs the block; an `AnnotationError` inside it propagates, or with `skip_bad` is counted in `report`."""
    try:
        yield
    except AnnotationError as error:
        if not skip_bad:
            raise
        report.add(source, str(error))


@dataclass
class _Group:
    candidates: list[str]
    source: str
    captions: list[str] = field(default_factory=list)
    timestamps: list[tuple[float, float]] = field(default_factory=list)
    entries: int = 0


class VideoGroups:
    """
    Collects captions per video in file order, so that formats listing a video once per caption (VindLU training
    files, DiDeMo, MSR-VTT sentences) still give one row per video.

    `candidates` are the paths where the video may lie, best first (e.g. `.mp4` then other extensions); the first
    one that exists is used.
    """

    def __init__(self, video_root: str | os.PathLike, allow_outside_root: bool = False):
        self._groups: dict[str, _Group] = {}
        self._root = os.path.abspath(os.fspath(video_root))
        self._allow_outside_root = allow_outside_root

    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._groups

    def add(
        self, video_id: str, candidates: Sequence[str], captions: Sequence[str], source: str, timestamps=()
    ) -> None:
        if not self._allow_outside_root:
            for candidate in candidates:
                self._check_inside_root(candidate, source)
        group = self._groups.get(video_id)
        if group is None:
            group = self._groups[video_id] = _Group(candidates=list(candidates), source=source)
        group.captions.extend(captions)
        group.timestamps.extend(tuple(span) for span in timestamps)
        group.entries += 1

    @property
    def entries(self) -> int:
        """Annotation entries added, over all videos."""
        return sum(group.entries for group in self._groups.values())

    def _check_inside_root(self, path: str, source: str) -> None:
        # Lexical check (no symlink resolution): a root that links to another disk is the user's own layout, while
        # "../" or an absolute path in an annotation file would read files the dataset does not own.
        path = os.path.abspath(path)
        if os.path.commonpath([self._root, path]) != self._root:
            raise AnnotationError(
                f"{source}: media path {path} is outside video_root {self._root}; pass allow_outside_root=True "
                "if the annotation file is meant to point there."
            )

    def records(
        self, split: str, media_type: str, paragraph: bool, check_files: bool, report: SkipReport, skip_bad: bool
    ) -> Iterator[tuple[dict, str]]:
        """`(record, source)` pairs for `processing.schema.build_dataset`; a video file found under none of its
        candidate paths raises (or is skipped) with the paths that were tried."""
        for video_id, group in tqdm(self._groups.items(), desc="Checking media files", disable=None, leave=False):
            source = group.source if group.entries == 1 else f"{group.source} and {group.entries - 1} more entries"
            with skipping(report, skip_bad, source):
                path = self._resolve(video_id, group, source, check_files)
                captions = [join_paragraph(group.captions)] if paragraph else group.captions
                yield make_record(path, captions, video_id, split, group.timestamps, media_type), source

    @staticmethod
    def _resolve(video_id: str, group: _Group, source: str, check_files: bool) -> str:
        if not check_files:
            return group.candidates[0]
        for candidate in group.candidates:
            if os.path.isfile(candidate):
                return candidate
        tried = ", ".join(group.candidates)
        raise AnnotationError(f"{source}: file for {video_id!r} not found; tried: {tried}")


def finish(
    groups: VideoGroups,
    split: str,
    report: SkipReport,
    skip_bad: bool,
    check_files: bool,
    media_type: str = "video",
    paragraph: bool = False,
    *,
    builder: Callable,
    annotation: str | os.PathLike,
    filtered: dict[str, int] | None = None,
):
    """
    The `(datasets.Dataset, SkipReport)` of a builder: parse-time skips first, then file and record skips.
    A split with no rows raises `EmptySplitError` naming the builder, the split, the `annotation` file(s), the
    entries skipped (with the most common reasons) and those `filtered` out on purpose (`{why: count}`).
    """
    records = list(groups.records(split, media_type, paragraph, check_files, report, skip_bad))
    dataset, build_report = build_dataset(records, skip_bad=skip_bad, check_files=check_files)
    report = SkipReport(report.skipped + build_report.skipped)
    logger.info("Built %d %s rows (split %r); skipped %d items.", len(dataset), media_type, split, len(report))
    if not len(dataset):
        raise EmptySplitError(_empty_split_message(builder, split, annotation, groups, report, filtered or {}),
                              report)
    return dataset, report


def _empty_split_message(builder, split, annotation, groups: VideoGroups, report: SkipReport, filtered) -> str:
    parts = [f"{len(groups)} videos had usable entries ({groups.entries} entries)"]
    if report:
        # The reason without its "<file>, entry N: " prefix, so that identical reasons count together.
        reasons = Counter(why[len(what) + 2:] if why.startswith(f"{what}: ") else why for what, why in report.skipped)
        common = "; ".join(f"{count} x {why.rstrip('.'):.120}" for why, count in reasons.most_common(3))
        parts.append(f"{len(report)} item(s) were skipped as bad (skip_bad=True), most often: {common}")
    parts += [f"{count} entries were filtered out because {why}" for why, count in filtered.items()]
    return (f"{builder.__name__}: split {split!r} from {os.fspath(annotation)} has no rows: {'; '.join(parts)}. "
            "Check `split`, `video_root` and the annotation file.")


__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoGroups",
    "annotation_path",
    "argument_error",
    "caption_list",
    "describe_arguments",
    "entry_source",
    "finish",
    "join_paragraph",
    "load_json",
    "read_csv_rows",
    "require",
    "require_video_root",
    "skipping",
    "time_span",
    "time_span_within",
]
