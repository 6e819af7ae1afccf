"""Finding the video files under a folder: recursive, by file extension, in a stable (sorted) order, so every process
of a sharded indexing run sees the same list and the same video gets the same row."""

import os
from typing import NamedTuple

from transformers.utils import logging

logger = logging.get_logger(__name__)

# Containers PyAV (FFmpeg) opens; compared case-insensitively.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts",
                    ".gif")


class VideoFolder(NamedTuple):
    """What `find_videos` found: the video files (sorted) and how many other files it passed over."""

    paths: list[str]
    num_other_files: int


def _normalise_extensions(extensions) -> tuple[str, ...]:
    normalised = tuple(ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions)
    if not normalised:
        raise ValueError("extensions is empty: give at least one video file extension such as '.mp4'.")
    return normalised


def find_videos(folder, extensions=VIDEO_EXTENSIONS, follow_symlinks: bool = True) -> VideoFolder:
    """
    Every file under `folder` (recursively) whose extension is in `extensions`, sorted by path. Hidden files and
    folders (names starting with ".") are left out; other files are counted and logged, not listed.

    Raises `NotADirectoryError` when `folder` is not a directory.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"{folder} is not a folder.")
    extensions = _normalise_extensions(extensions)
    paths, others = [], 0
    for root, dirs, files in os.walk(folder, followlinks=follow_symlinks):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            if name.lower().endswith(extensions):
                paths.append(os.path.join(root, name))
            else:
                others += 1
    paths.sort()
    if others:
        logger.info("%s: %d video files; %d other files left out (extensions %s).", folder, len(paths), others,
                    ", ".join(extensions))
    return VideoFolder(paths, others)


__all__ = ["VIDEO_EXTENSIONS", "VideoFolder", "find_videos"]
