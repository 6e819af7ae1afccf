"""Broken media files the tests write themselves: one of each way a file in a real dataset turns out unreadable,
and seeded byte mutations of a good file for fuzzing."""

import struct
import zlib
from pathlib import Path

import av
import numpy as np

# Each kind of broken file, named as in issue 13; `write_broken` writes one.
BROKEN_KINDS = ("truncated", "random_bytes", "empty", "corrupt_metadata", "no_codec", "decompression_bomb")
_TITLE = b"T2V2TMETA" * 2


def write_small_video(path: Path, num_frames: int = 12, height: int = 32, width: int = 48, keyframe_interval: int = 4,
                      title: str | None = None) -> Path:
    """An h264 video (mp4/mkv from the suffix) whose frame i has grey level 10*i; `title` goes in the metadata."""
    with av.open(str(path), "w") as container:
        if title:
            container.metadata["title"] = title
        stream = container.add_stream("libx264", rate=10, options={"g": str(keyframe_interval)})
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for index in range(num_frames):
            frame = np.full((height, width, 3), 10 * index % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path: Path, side: int = 20_000) -> Path:
    """A ~100-byte PNG claiming `side` x `side` pixels: over PIL's 2x MAX_IMAGE_PIXELS limit (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    pixels = zlib.compress(b"\0" * 64)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")
    Path(path).write_bytes(data)
    return Path(path)


def write_broken(kind: str, folder: Path, name: str, seed: int = 0) -> Path:
    """Write a broken file of `kind` (see `BROKEN_KINDS`) into `folder`; returns its path."""
    folder = Path(folder)
    if kind == "truncated":  # an mp4 cut off before its index (the moov box is written last)
        path = write_small_video(folder / f"{name}.mp4")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path
    if kind == "random_bytes":
        path = folder / f"{name}.mp4"
        path.write_bytes(np.random.default_rng(seed).bytes(4096))
        return path
    if kind == "empty":
        path = folder / f"{name}.mp4"
        path.write_bytes(b"")
        return path
    if kind == "corrupt_metadata":  # a title tag that is not UTF-8: PyAV fails with UnicodeDecodeError on open
        path = write_small_video(folder / f"{name}.mkv", title=_TITLE.decode())
        path.write_bytes(path.read_bytes().replace(_TITLE, b"\xff\xfe" * (len(_TITLE) // 2)))
        return path
    if kind == "no_codec":  # the codec id replaced by one FFmpeg has no decoder for: no codec_context
        path = write_small_video(folder / f"{name}.mkv")
        path.write_bytes(path.read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_ZZZZZ/ISO/ZZZ"))
        return path
    if kind == "decompression_bomb":
        return write_bomb_png(folder / f"{name}.png")
    raise ValueError(f"unknown kind {kind!r}; expected one of {BROKEN_KINDS}")


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation of `data`: flipped bytes, a random or zeroed span, a cut, a duplicated or deleted span."""
    data = bytearray(data)
    size = len(data)
    kind = int(rng.integers(6))
    start = int(rng.integers(size))
    span = int(rng.integers(1, 64))
    if kind == 0:  # a few flipped bytes anywhere
        for position in rng.integers(size, size=int(rng.integers(1, 9))):
            data[position] ^= int(rng.integers(1, 256))
    elif kind == 1:
        data[start : start + span] = rng.bytes(len(data[start : start + span]))
    elif kind == 2:
        data[start : start + span] = bytes(len(data[start : start + span]))
    elif kind == 3:  # cut short
        del data[start:]
    elif kind == 4:
        data[start:start] = data[start : start + span]
    else:
        del data[start : start + span]
    return bytes(data)
