"""MSR-VTT (Xu et al., CVPR 2016) in its own annotation files and the retrieval splits of the literature.

Files and where their format is documented:

- `MSRVTT_data.json` (CLIP4Clip's `msrvtt_data.zip`, ArrowLuo/CLIP4Clip `dataloaders/dataloader_msrvtt_retrieval.py`)
  and MSR-VTT's own `train_val_videodatainfo.json` / `test_videodatainfo.json` (the MSR-VTT 10K readme) share
  one structure:

      {"info": {...},
       "videos": [{"video_id": "video0", "split": "train", "category": 9, "url": "...",
                   "start time": 137.72, "end time": 149.44, "id": 0}, ...],
       "sentences": [{"video_id": "video0", "caption": "a car is shown", "sen_id": 0}, ...]}

  `split` is `train` (video0-6512), `validate` (video6513-7009) or `test` (video7010-9999): the official splits,
  here `split="train" | "validate" | "test"`. Each video has 20 sentences. "start time"/"end time" locate the
  clip in its YouTube source; the distributed clips are already cut, so they are not kept as timestamps.
- `MSRVTT_train.9k.csv` / `MSRVTT_train.7k.csv` (CLIP4Clip, from JSFusion / Miech et al.'s splits): one column
  `video_id`; captions come from `MSRVTT_data.json`. `split="train_9k"` (9,000 videos) or `"train_7k"` (7,010).
- `MSRVTT_JSFUSION_test.csv` (Yu et al., ECCV 2018 "JSFusion"; CLIP4Clip): the 1k-A test split, columns
  `key,vid_key,video_id,sentence` (`ret0,msr9770,video9770,a person is connecting something to system`),
  one sentence per video. `split="test_1k_a"`.

Videos are `<video_root>/<video_id>.mp4` (the Frozen-in-Time `MSRVTT.zip` layout); other extensions are tried
when the `.mp4` is missing, unless `video_extension` is given.
"""

import os
from collections import defaultdict

from ..schema import AnnotationError, SkipReport
from .common import (
    VIDEO_EXTENSIONS,
    VideoGroups,
    argument_error,
    caption_list,
    entry_source,
    finish,
    load_json,
    read_csv_rows,
    require,
    skipping,
)

CSV_SPLITS = {"train_9k": "MSRVTT_train.9k.csv", "train_7k": "MSRVTT_train.7k.csv"}
TEST_1K_A = "MSRVTT_JSFUSION_test.csv"
OFFICIAL_SPLITS = {
    "train": "train_val_videodatainfo.json",
    "validate": "train_val_videodatainfo.json",
    "test": "test_videodatainfo.json",
}
DATA_JSON = "MSRVTT_data.json"
SPLITS = (*CSV_SPLITS, "test_1k_a", *OFFICIAL_SPLITS)


def build_msrvtt(
    video_root: str | os.PathLike,
    split: str,
    data_json: str | os.PathLike | None = None,
    train_csv: str | os.PathLike | None = None,
    test_csv: str | os.PathLike | None = None,
    annotation_dir: str | os.PathLike | None = None,
    video_extension: str | None = None,
    skip_bad: bool = False,
    check_files: bool = True,
    allow_outside_root: bool = False,
):
    """
    Rows for one MSR-VTT split, one per video with all its captions; `video_id` is MSR-VTT's (`"video7020"`).
    Returns `(datasets.Dataset, SkipReport)`.

    Args:
        video_root: folder holding `<video_id>.mp4`.
        split: `"train_9k"`, `"train_7k"`, `"test_1k_a"`, or an official split `"train"`, `"validate"`, `"test"`.
        data_json: `MSRVTT_data.json` (or `train_val_videodatainfo.json` / `test_videodatainfo.json`): captions for
            the 9k/7k splits, videos and captions for the official splits.
        train_csv: `MSRVTT_train.9k.csv` or `MSRVTT_train.7k.csv`, for `train_9k` / `train_7k`.
        test_csv: `MSRVTT_JSFUSION_test.csv`, for `test_1k_a`.
        annotation_dir: folder holding the files under their usual names (`msrvtt_data/` of CLIP4Clip, plus MSR-VTT's
            own json files): fills in the paths not given.
        video_extension: the videos' extension (e.g. `".mp4"`); by default `.mp4` first, then other common ones.
        skip_bad: count and log bad entries and missing videos instead of raising `AnnotationError`.
        check_files: check that every video file exists.
        allow_outside_root: accept video ids that lead outside `video_root`.

    Example:

    ```python
    train, _ = build_msrvtt("MSRVTT/videos/all", "train_9k", annotation_dir="msrvtt_data")
    test, _ = build_msrvtt("MSRVTT/videos/all", "test_1k_a", annotation_dir="msrvtt_data")
    ```
    """
    if split not in SPLITS:
        raise argument_error(build_msrvtt, f"unknown MSR-VTT split {split!r}; choose one of {SPLITS}")
    extensions = (video_extension,) if video_extension else VIDEO_EXTENSIONS

    def candidates(video_id: str) -> list[str]:
        return [os.path.join(video_root, video_id + extension) for extension in extensions]

    report, groups = SkipReport(), VideoGroups(video_root, allow_outside_root)
    if split == "test_1k_a":
        test_csv = _path(test_csv, annotation_dir, TEST_1K_A, "test_csv", split)
        for line, row in read_csv_rows(test_csv, ("key", "video_id", "sentence")):
            source = entry_source(test_csv, line, "line", f"key {row.get('key')}")
            with skipping(report, skip_bad, source):
                video_id = _video_id(row.get("video_id"), source)
                captions = caption_list(row.get("sentence"), source, "sentence")
                groups.add(video_id, candidates(video_id), captions, source)
        return finish(groups, split, report, skip_bad, check_files, builder=build_msrvtt, annotation=test_csv)

    if split in CSV_SPLITS:
        data_json = _path(data_json, annotation_dir, DATA_JSON, "data_json", split)
        train_csv = _path(train_csv, annotation_dir, CSV_SPLITS[split], "train_csv", split)
        sentences = _sentences_by_video(data_json, report, skip_bad)
        videos = ((row, entry_source(train_csv, line, "line")) for line, row in read_csv_rows(train_csv, ("video_id",)))
        annotation = f"{train_csv} and {data_json}"
    else:
        data_json = _official_data_json(data_json, annotation_dir, split)
        sentences = _sentences_by_video(data_json, report, skip_bad)
        videos = (
            (entry, entry_source(data_json, index, "video"))
            for index, entry in enumerate(_load_list(data_json, "videos"))
        )
        annotation = data_json

    other_split = 0
    for entry, source in videos:
        with skipping(report, skip_bad, source):
            if split in OFFICIAL_SPLITS and require(entry, "split", str, source) != split:
                other_split += 1
                continue
            video_id = _video_id(require(entry, "video_id", None, source), source)
            if video_id in groups:
                raise AnnotationError(f"{source}: video {video_id!r} is listed twice.")
            if video_id not in sentences:
                raise AnnotationError(f"{source}: video {video_id!r} has no sentences in {os.fspath(data_json)}.")
            captions = []
            for sentence_source, sentence in sentences[video_id]:
                # A bad sentence is one skip; the video keeps its other captions.
                with skipping(report, skip_bad, sentence_source):
                    captions += caption_list(require(sentence, "caption", None, sentence_source), sentence_source)
            if captions:
                groups.add(video_id, candidates(video_id), captions, source)
    return finish(groups, split, report, skip_bad, check_files, builder=build_msrvtt, annotation=annotation,
                  filtered={f"their 'split' is not {split!r}": other_split})


def _path(given, annotation_dir, default_name: str, argument: str, split: str) -> str:
    if given is not None:
        return os.fspath(given)
    if annotation_dir is None:
        raise argument_error(build_msrvtt, f"split {split!r} needs `{argument}` ({default_name}) or `annotation_dir`")
    return os.path.join(annotation_dir, default_name)


def _official_data_json(data_json, annotation_dir, split: str) -> str:
    """MSR-VTT's own file for the split, or `MSRVTT_data.json`, which holds all 10k videos with their split."""
    if data_json is not None or annotation_dir is None:
        return _path(data_json, annotation_dir, OFFICIAL_SPLITS[split], "data_json", split)
    own = os.path.join(annotation_dir, OFFICIAL_SPLITS[split])
    return own if os.path.isfile(own) else os.path.join(annotation_dir, DATA_JSON)


def _load_list(data_json: str, key: str) -> list:
    data = load_json(data_json)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise AnnotationError(f"{data_json}: expected an object with a {key!r} list (MSR-VTT videodatainfo format).")
    return data[key]


def _sentences_by_video(data_json: str, report: SkipReport, skip_bad: bool) -> dict[str, list[tuple[str, dict]]]:
    """`video_id -> [(source, sentence entry)]`; captions are validated only for the videos a split uses."""
    by_video = defaultdict(list)
    for index, entry in enumerate(_load_list(data_json, "sentences")):
        detail = isinstance(entry, dict) and f"sen_id {entry.get('sen_id')}"
        source = entry_source(data_json, index, "sentence", detail)
        with skipping(report, skip_bad, source):
            by_video[require(entry, "video_id", str, source)].append((source, entry))
    return by_video


def _video_id(value, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(f"{source}: missing or empty video_id.")
    return value.strip()


__all__ = ["SPLITS", "build_msrvtt"]
