"""VindLU / Singularity annotation JSON, and the built-in synthetic benchmark written in the same format.

Format (documented in the READMEs and `dataset/utils.py::load_anno` of klauscc/VindLU and jayleicn/singularity):
a JSON list of objects

    [{"video": "video0.mp4", "caption": "a man is driving a car"},
     {"video": "video0.mp4", "caption": "a car drives down a road"},
     {"video": "v_QOlSCBRmfWY.mp4", "caption": ["A young woman ...", "The girl dances ..."], "duration": 82.73},
     {"image": "train2014/COCO_train2014_000000057870.jpg", "caption": ["A restaurant ...", "..."]}]

- the media path is relative to the media root, under `"video"` for video corpora (VindLU's loader) or
  `"image"` (Singularity's README uses `"image"` for videos too; both are accepted);
- `"caption"` is a string or a list of strings; other keys (`"duration"`, `"image_id"`, ...) are ignored;
- training files list a video once per caption (e.g. `msrvtt_ret_train9k.json`): the entries are grouped,
  one row per video with all its captions;
- paragraph-retrieval files (`didemo_ret_*.json`, `anet_ret_*.json`) give a list of sentences per video; with
  `paragraph=True` they are joined with a space into one caption, as VindLU's `is_paragraph_retrieval` does.
- SSv2 label retrieval files, where one entry lists several videos, are not supported.

The project's synthetic benchmark uses this format: `annotations/{train,val,test}.json` with
`{"video": "videos/<split>/<name>.mp4", "caption": [...]}` (paraphrases, one row per video) and
`annotations/<split>_paragraph.json` whose captions are the sentences of one paragraph.

Example:

```python
dataset, skipped = build_vindlu_json("bench/annotations/test_paragraph.json", "bench", split="test", paragraph=True)
dataset[0]["captions"]  # [one paragraph]
```
"""

import os

from ..schema import MEDIA_TYPES, AnnotationError, SkipReport
from .common import VideoGroups, caption_list, entry_source, finish, load_json, require, skipping


def build_vindlu_json(
    annotation_file: str | os.PathLike,
    video_root: str | os.PathLike,
    split: str = "train",
    paragraph: bool = False,
    media_type: str = "video",
    skip_bad: bool = False,
    check_files: bool = True,
    allow_outside_root: bool = False,
):
    """
    Rows for a VindLU/Singularity annotation file, media paths joined to `video_root`; `video_id` is the relative
    path. Returns `(datasets.Dataset, SkipReport)`.

    Args:
        annotation_file: the JSON list described in the module docstring.
        video_root: folder the media paths are relative to.
        split: value of the `split` column.
        paragraph: join each video's captions into one paragraph (DiDeMo / ActivityNet paragraph retrieval).
        media_type: `"video"`, or `"image"` for image-caption files (COCO, CC3M, ...), read as 1-frame videos.
        skip_bad: count and log bad entries and missing files instead of raising `AnnotationError`.
        check_files: check that every media file exists.
        allow_outside_root: accept media paths that lead outside `video_root` (absolute or `../` paths).
    """
    if media_type not in MEDIA_TYPES:
        raise ValueError(f"media_type must be one of {MEDIA_TYPES}, got {media_type!r}.")
    data = load_json(annotation_file)
    if not isinstance(data, list):
        raise AnnotationError(
            f"{os.fspath(annotation_file)}: expected a list of {{'{media_type}': path, 'caption': ...}} objects, "
            f"got {type(data).__name__}."
        )
    # The key naming the media file: VindLU's loader reads "video" for videos, Singularity writes "image" for both.
    keys = ("video", "image") if media_type == "video" else ("image", "video")
    report, groups = SkipReport(), VideoGroups(video_root, allow_outside_root)
    for index, entry in enumerate(data):
        source = entry_source(annotation_file, index)
        with skipping(report, skip_bad, source):
            key = next((k for k in keys if isinstance(entry, dict) and k in entry), keys[0])
            if isinstance(entry, dict) and isinstance(entry.get(key), list):
                raise AnnotationError(
                    f"{source}: {key!r} lists several files (SSv2-style label retrieval), which is not supported."
                )
            relative = require(entry, key, str, source)
            if not relative.strip():
                raise AnnotationError(f"{source}: {key!r} is an empty path.")
            captions = caption_list(require(entry, "caption", None, source), source)
            groups.add(relative, [os.path.join(video_root, relative)], captions, source)
    return finish(groups, split, report, skip_bad, check_files, media_type=media_type, paragraph=paragraph,
                  builder=build_vindlu_json, annotation=annotation_file)


__all__ = ["build_vindlu_json"]
