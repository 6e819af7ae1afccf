"""ActivityNet Captions (Krishna et al., "Dense-Captioning Events in Videos", ICCV 2017) for paragraph retrieval.

Format (the dataset's `captions.zip` from the paper's project page: `train.json`, `val_1.json`, `val_2.json`;
read the same way by ArrowLuo/CLIP4Clip `dataloaders/dataloader_activitynet_retrieval.py`): one JSON object
keyed by video id,

    {"v_QOlSCBRmfWY": {"duration": 82.73,
                       "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 79.42]],
                       "sentences": ["A young woman is seen standing in a room and leads into her dancing.",
                                     " The girl dances around the room while the camera captures her movements.",
                                     " She continues dancing around the room and ends by laying on the floor."]},
     ...}

- `timestamps` are seconds, one `[start, end]` per sentence. They must be numbers with `0 <= start <= end` and
  `start <= duration`; an end past `duration` (the release has a few) is clipped to it and
  the clipped count logged;
- sentences often start with a space: they are stripped.
- `val_1` and `val_2` annotate the same videos by different annotators; retrieval papers (CLIP4Clip, VindLU)
  train on `train` and test on `val_1`.

Paragraph retrieval: one row per video, caption = the sentences joined with a space; with `paragraph=False` the
sentences stay separate captions, aligned with `timestamps`.

Video files: ActivityNet's own download names them `v_<youtube id>.mp4` (some `.mkv` / `.webm`); other copies
drop the `v_` prefix (CLIP4Clip's loader strips it). The builder tries `v_<id>` then `<id>` with `.mp4` first,
then other common extensions (only `video_extension` when given); a missing video's error lists every path tried.
"""

import logging
import os

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
    time_span,
    time_span_within,
)

logger = logging.getLogger(__name__)


def build_activitynet(
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
    Rows for one ActivityNet Captions file, one per video; `video_id` is the file's key (`"v_QOlSCBRmfWY"`).
    Returns `(datasets.Dataset, SkipReport)`.

    Args:
        annotation_file: `train.json`, `val_1.json` or `val_2.json`.
        video_root: folder holding the videos (required).
        split: value of the `split` column; by default the file name without extension (`"val_1"`).
        annotation_dir: instead of `annotation_file`, the folder holding `<split>.json` (`split` is then required).
        paragraph: join each video's sentences into one caption (paragraph retrieval, the standard protocol).
        video_extension: the videos' extension (e.g. `".mp4"`); by default several are tried.
        skip_bad: count and log bad entries and missing videos instead of raising `AnnotationError`.
        check_files: check that every video file exists.
        allow_outside_root: accept video ids that lead outside `video_root`.
    """
    video_root = require_video_root(build_activitynet, video_root)
    annotation_file = annotation_path(build_activitynet, annotation_file, annotation_dir, split, "{split}.json")
    split = split or os.path.splitext(os.path.basename(annotation_file))[0]
    data = load_json(annotation_file)
    if not isinstance(data, dict):
        raise AnnotationError(
            f"{os.fspath(annotation_file)}: expected an object mapping video ids to "
            f"{{'duration', 'timestamps', 'sentences'}}, got {type(data).__name__}."
        )
    extensions = (video_extension,) if video_extension else VIDEO_EXTENSIONS
    report, groups = SkipReport(), VideoGroups(video_root, allow_outside_root)
    clipped = 0
    for index, (video_id, entry) in enumerate(data.items()):
        source = entry_source(annotation_file, index, detail=f"video {video_id!r}")
        with skipping(report, skip_bad, source):
            if not video_id.strip():
                raise AnnotationError(f"{source}: empty video id.")
            sentences = caption_list(require(entry, "sentences", list, source), source, "sentences")
            spans = [time_span(span, source) for span in require(entry, "timestamps", list, source)]
            if len(spans) != len(sentences):
                raise AnnotationError(
                    f"{source}: {len(sentences)} sentences but {len(spans)} timestamps; they must pair up."
                )
            duration = None
            if "duration" in entry:
                duration = float(require(entry, "duration", (int, float), source))
                if not duration > 0:
                    raise AnnotationError(f"{source}: 'duration' must be a positive number of seconds, got {duration}.")
            checked = [time_span_within(span, duration, source) for span in spans]
            spans = [span for span, _ in checked]
            # "v_<id>" in the annotations; files may or may not keep the prefix.
            bare = video_id[2:] if video_id.startswith("v_") else video_id
            stems = [video_id, bare] if bare != video_id else [video_id, "v_" + video_id]
            candidates = [os.path.join(video_root, stem + ext) for ext in extensions for stem in stems]
            groups.add(video_id, candidates, sentences, source, spans)
            clipped += sum(was_clipped for _, was_clipped in checked)
    if clipped:
        logger.info("%s: clipped %d moment end(s) past their video's duration.", annotation_file, clipped)
    return finish(groups, split, report, skip_bad, check_files, paragraph=paragraph,
                  builder=build_activitynet, annotation=annotation_file)


__all__ = ["build_activitynet"]
