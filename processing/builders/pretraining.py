"""Pretraining corpora: WebVid video-caption CSVs and CC3M-style image-caption data (images are 1-frame videos).

**WebVid-2M / WebVid-10M** (Bain et al., "Frozen in Time", ICCV 2021; format in the README of m-bain/webvid and
the `WebVid` dataset class of m-bain/frozen-in-time): `results_2M_train.csv`, `results_10M_train.csv`,
`results_2M_val.csv`, ... with a header and the columns

    videoid,contentUrl,duration,page_dir,name
    31353427,https://ak.picdn.net/.../31353427/preview/stock-footage-....mp4,PT00H00M15S,006001_006050,"Merida, ..."

(some releases add `page_idx`). The caption is `name`; the video is `<video_root>/<page_dir>/<videoid>.mp4` as the
WebVid download script lays it out; a flat `<video_root>/<videoid>.mp4` (VindLU's preprocessed copies) is tried
next. `video_id` is `videoid`.

**CC3M-style image-caption data** (Sharma et al., ACL 2018; google-research-datasets/conceptual-captions). The
released `Train_GCC-training.tsv` is `caption<TAB>url` with no header: images must be downloaded first. Two
layouts of downloaded data are read:

1. the **img2dataset** folder layout (rom1504/img2dataset, `--output_format files`, the downloader VindLU's
   DATA.md recommends): `<video_root>/<shard>/<key>.jpg` with the caption in `<key>.txt` beside it (plus
   `<key>.json` and per-shard `.parquet` files, ignored), e.g. `00000/000000012.jpg` + `00000/000000012.txt`.
   Pass `annotation_file=None` and the folder as `video_root`; `video_id` is the key. (img2dataset's webdataset
   `.tar` output is not read.)
2. a **caption/path table**: a TSV (or CSV, by extension) whose rows are `caption<TAB>relative image path`, the
   column order of the Conceptual Captions TSV with the URL replaced by the downloaded file, without a header;
   or with a header naming `caption_column` and `image_column` in any order. `video_id` is the image path.
"""

import csv
import io
import os

from ..schema import AnnotationError, SkipReport, read_text_file
from .common import IMAGE_EXTENSIONS, VideoGroups, caption_list, entry_source, finish, read_csv_rows, skipping


def build_webvid(
    annotation_file: str | os.PathLike,
    video_root: str | os.PathLike,
    split: str = "train",
    video_extension: str = ".mp4",
    skip_bad: bool = False,
    check_files: bool = True,
    allow_outside_root: bool = False,
):
    """
    Rows for a WebVid results CSV, one per video. Returns `(datasets.Dataset, SkipReport)`.

    With millions of rows, `skip_bad=True` is the usual setting: part of WebVid is always missing from a download.

    Args:
        annotation_file: the results CSV, `results_2M_train.csv`, `results_10M_train.csv`, ... (columns `videoid`,
            `name`, and `page_dir`).
        video_root: folder holding `<page_dir>/<videoid>.mp4` (or `<videoid>.mp4`).
        split: value of the `split` column.
        video_extension: the videos' extension.
        skip_bad: count and log bad rows and missing videos instead of raising `AnnotationError`.
        check_files: check that every video file exists.
        allow_outside_root: accept `page_dir` / `videoid` values that lead outside `video_root`.
    """
    report, groups = SkipReport(), VideoGroups(video_root, allow_outside_root)
    for line, row in read_csv_rows(annotation_file, ("videoid", "name"), delimiter=","):
        source = entry_source(annotation_file, line, "line", f"videoid {row.get('videoid')}")
        with skipping(report, skip_bad, source):
            video_id = (row.get("videoid") or "").strip()
            if not video_id:
                raise AnnotationError(f"{source}: empty videoid.")
            page_dir = (row.get("page_dir") or "").strip()
            candidates = [os.path.join(video_root, video_id + video_extension)]
            if page_dir:
                candidates.insert(0, os.path.join(video_root, page_dir, video_id + video_extension))
            groups.add(video_id, candidates, caption_list(row.get("name"), source, "name"), source)
    return finish(groups, split, report, skip_bad, check_files, builder=build_webvid, annotation=annotation_file)


def build_cc3m(
    video_root: str | os.PathLike,
    annotation_file: str | os.PathLike | None = None,
    split: str = "train",
    caption_column: str = "caption",
    image_column: str = "image",
    skip_bad: bool = False,
    check_files: bool = True,
    allow_outside_root: bool = False,
):
    """
    Rows (`media_type="image"`) for downloaded CC3M-style image-caption data, one per image.
    Returns `(datasets.Dataset, SkipReport)`.

    Args:
        video_root: the img2dataset output folder, or the folder the table's image paths are relative to (the media
            root; named as in the other builders although it holds images).
        annotation_file: `None` for the img2dataset layout, else a caption/path TSV or CSV (see the module docstring).
        split: value of the `split` column.
        caption_column, image_column: header names of the table's columns, when it has a header.
        skip_bad: count and log bad rows and missing images instead of raising `AnnotationError`.
        check_files: check that every image file exists.
        allow_outside_root: accept table image paths that lead outside `video_root`.

    Example:

    ```python
    # img2dataset --url_list cc3m.tsv --input_format tsv --url_col url --caption_col caption --output_folder cc3m
    dataset, skipped = build_cc3m("cc3m")
    ```
    """
    report, groups = SkipReport(), VideoGroups(video_root, allow_outside_root)
    if annotation_file is None:
        _read_img2dataset(video_root, groups, report, skip_bad)
    else:
        _read_caption_table(annotation_file, video_root, caption_column, image_column, groups, report, skip_bad)
    return finish(groups, split, report, skip_bad, check_files, media_type="image", builder=build_cc3m,
                  annotation=video_root if annotation_file is None else annotation_file)


def _read_img2dataset(image_root, groups: VideoGroups, report: SkipReport, skip_bad: bool) -> None:
    image_root = os.fspath(image_root)
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"Image folder not found: {image_root}")
    # Shard folders `00000/`, `00001/`, ...; images lying directly in the root are read too.
    folders = [image_root] + sorted(entry.path for entry in os.scandir(image_root) if entry.is_dir())
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            stem, extension = os.path.splitext(name)
            if extension.lower() not in IMAGE_EXTENSIONS:
                continue
            image = os.path.join(folder, name)
            with skipping(report, skip_bad, image):
                caption_file = os.path.join(folder, stem + ".txt")
                if not os.path.isfile(caption_file):
                    raise AnnotationError(f"{image}: no caption file {caption_file} (img2dataset writes <key>.txt).")
                caption = caption_list(read_text_file(caption_file), caption_file)
                groups.add(stem, [image], caption, image)
    if not len(groups) and not report:
        tars = any(name.endswith(".tar") for name in os.listdir(image_root))
        hint = " It holds .tar shards: re-run img2dataset with --output_format files." if tars else ""
        raise AnnotationError(
            f"{image_root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the img2dataset layout "
            f"<shard>/<key>.jpg + <key>.txt.{hint}"
        )


def _read_caption_table(
    annotation_file, image_root, caption_column: str, image_column: str, groups: VideoGroups, report, skip_bad
) -> None:
    path = os.fspath(annotation_file)
    # TSV fields are never quoted (a caption may start with a quote mark); CSV fields may be.
    options = {"delimiter": ","} if path.lower().endswith(".csv") else {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    text = read_text_file(path)
    reader = csv.reader(io.StringIO(text, newline=""), **options)
    header = [name.strip() for name in next(reader, [])]
    if caption_column in header and image_column in header:
        caption_index, image_index = header.index(caption_column), header.index(image_column)
    else:
        # No header: the first line is data, in the Conceptual Captions column order (caption, then image).
        caption_index, image_index = 0, 1
        reader = csv.reader(io.StringIO(text, newline=""), **options)
    rows = (
        (reader.line_num, *(row[index] if index < len(row) else None for index in (caption_index, image_index)))
        for row in reader
        if row
    )
    for line, caption, relative in rows:
        source = entry_source(path, line, "line")
        with skipping(report, skip_bad, source):
            if not isinstance(relative, str) or not relative.strip():
                raise AnnotationError(f"{source}: missing image path (expected caption, then image path).")
            relative = relative.strip()
            if relative.startswith(("http://", "https://")):
                raise AnnotationError(
                    f"{source}: the image column holds a URL ({relative:.60}): this is the raw Conceptual Captions "
                    "list. Download the images first (e.g. with img2dataset) and pass its output folder."
                )
            groups.add(relative, [os.path.join(image_root, relative)], caption_list(caption, source), source)


__all__ = ["build_cc3m", "build_webvid"]
