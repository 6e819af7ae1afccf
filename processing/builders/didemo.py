"""DiDeMo (Hendricks et al., "Localizing Moments in Video with Natural Language", ICCV 2017) for paragraph
retrieval.

Format (documented in the README of LisaAnne/LocalizingMoments, which ships `data/{train,val,test}_data.json`;
read the same way by ArrowLuo/CLIP4Clip `dataloaders/dataloader_didemo_retrieval.py`): a JSON list with one
object per description,

    [{"annotation_id": 1, "description": "someone kicks the bug towards some rocks.",
      "video": "26292851@N04_4253489686_265c3c8051.m4v", "times": [[4, 4], [4, 4], [0, 0], [4, 4]],
      "num_segments": 6, "dl_link": "https://www.flickr.com/video_download.gne?id=4253489686"}, ...]

- a video has several descriptions (3-5 typically), each its own entry;
- `times` holds one `[start, end]` pair per annotator (usually 4), in 5-second chunk indices, both inclusive:
  `(s, e)` is the moment from `5*s` to `5*(e+1)` seconds (`(3, 3)` = 15-20 s, `(1, 4)` = 5-25 s). Videos were
  annotated over their first 30 s, so the last chunk may be shorter than 5 s: end times are not clipped here.

Paragraph retrieval (VindLU, CLIP4Clip): one row per video whose caption is all its descriptions joined with a
space, in file order. `timestamps` keeps one moment per description, in the same order: the annotators'
most frequent `[start, end]` (the first such on a tie), converted to seconds. With `paragraph=False` the
descriptions stay separate captions, aligned with `timestamps`.

Video files: the names in the JSON keep Flickr's original extensions (`.mov`, `.avi`, `.m4v`, `.mpg`, ... and
some names end with a bare `.`). The AWS download script of LocalizingMoments saves `<name>.mp4`; re-encoded
copies usually replace the extension (`<stem>.mp4`). Without `video_extension`, the builder tries the name as
given, `<name>.mp4`, then `<stem><ext>` for common extensions; with `video_extension=".mp4"` only `<stem>.mp4`
and `<name>.mp4`. A missing video's error lists every path tried.
"""

import os
from collections import Counter

from ..schema import AnnotationError, SkipReport
from .common import (
    VIDEO_EXTENSIONS,
    VideoGroups,
    annotation_path,
    caption_list,
    entry_source,
    finish,
    load_json,
    require,
    require_video_root,
    skipping,
)

SEGMENT_SECONDS = 5.0


def build_didemo(
    annotation_file: str | os.PathLike | None = None,
    video_root: str | os.PathLike | None = None,
    split: str | None = None,
    annotation_dir: str | os.PathLike | None = None,
    paragraph: bool = True,
    video_extension: str | None = None,
    skip_bad: bool = False,
    check_files: bool = True,
    allow_outside_root: bool = False,
):
    """
    Rows for one DiDeMo annotation file, one per video; `video_id` is the video name in the JSON.
    Returns `(datasets.Dataset, SkipReport)`.

    Args:
        annotation_file: `train_data.json`, `val_data.json` or `test_data.json`.
        video_root: folder holding the videos (required).
        split: value of the `split` column; by default taken from the file name (`val_data.json` -> `"val"`).
        annotation_dir: instead of `annotation_file`, the folder holding `<split>_data.json` (`split` is then
            required: `"train"`, `"val"` or `"test"`).
        paragraph: join each video's descriptions into one caption (paragraph retrieval, the standard protocol).
        video_extension: extension of re-encoded videos (e.g. `".mp4"`); by default several names are tried.
        skip_bad: count and log bad entries and missing videos instead of raising `AnnotationError`.
        check_files: check that every video file exists.
        allow_outside_root: accept video names that lead outside `video_root`.
    """
    video_root = require_video_root(build_didemo, video_root)
    annotation_file = annotation_path(build_didemo, annotation_file, annotation_dir, split, "{split}_data.json")
    split = split or os.path.basename(annotation_file).split("_data")[0].split(".")[0]
    data = load_json(annotation_file)
    if not isinstance(data, list):
        raise AnnotationError(
            f"{os.fspath(annotation_file)}: expected a list of DiDeMo descriptions, got {type(data).__name__}."
        )
    report, groups = SkipReport(), VideoGroups(video_root, allow_outside_root)
    for index, entry in enumerate(data):
        detail = isinstance(entry, dict) and "annotation_id" in entry and f"annotation_id {entry['annotation_id']}"
        source = entry_source(annotation_file, index, detail=detail)
        with skipping(report, skip_bad, source):
            name = require(entry, "video", str, source)
            if not name.strip():
                raise AnnotationError(f"{source}: 'video' is an empty name.")
            description = caption_list(require(entry, "description", str, source), source, "description")
            moment = _consensus_moment(require(entry, "times", list, source), source)
            groups.add(name, _candidates(video_root, name, video_extension), description, source, [moment])
    return finish(groups, split, report, skip_bad, check_files, paragraph=paragraph,
                  builder=build_didemo, annotation=annotation_file)


def _consensus_moment(times: list, source: str) -> tuple[float, float]:
    """The annotators' most frequent chunk pair, in seconds."""
    if not times:
        raise AnnotationError(f"{source}: 'times' is empty.")
    pairs = []
    for pair in times:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(t, int) and not isinstance(t, bool) for t in pair)
            or not 0 <= pair[0] <= pair[1]
        ):
            raise AnnotationError(f"{source}: each of 'times' must be [start, end] chunk indices, got {pair!r}.")
        pairs.append(tuple(pair))
    start, end = Counter(pairs).most_common(1)[0][0]  # ties: first seen
    return start * SEGMENT_SECONDS, (end + 1) * SEGMENT_SECONDS


def _candidates(video_root, name: str, video_extension: str | None) -> list[str]:
    stem = os.path.splitext(name)[0]  # "x.m4v" -> "x"; "x." -> "x"
    if video_extension:
        names = [stem + video_extension, name + video_extension]
    else:
        names = [name, name + ".mp4", *(stem + extension for extension in VIDEO_EXTENSIONS)]
    return list(dict.fromkeys(os.path.join(video_root, n) for n in names))  # without repeats, in order


__all__ = ["build_didemo"]
