"""Video decoding and VindLU frame sampling for the data pipeline.

`sample_frame_indices` picks `num_frames` frames from `num_frames` equal segments of a clip (a random frame of each
segment for training, the middle one for evaluation). `probe_video` reads a file's header and rejects unusable files
with an error naming the file and the problem. `decode_clip` decodes the sampled frames with PyAV (default),
torchcodec or decord, seeking instead of decoding the whole file; the three give identical frames for the same
indices. Image files are 1-frame videos whatever the backend.

Example:

```python
>>> from processing.decoding import decode_clip, probe_video
>>> probe_video("video7010.mp4").num_frames  # doctest: +SKIP
300
>>> decode_clip("video7010.mp4", num_frames=12).shape  # doctest: +SKIP
(12, 240, 320, 3)
```
"""

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
import PIL.Image

# VideoDecodeError lives with the model's processor (a Hub file cannot import this package); re-exported here.
from modeling_t2v2t.video_processing_t2v2t import (
    DECODE_STRATEGIES,
    IMAGE_SUFFIXES,
    VideoDecodeError,
    first_video_stream,
    load_video_file,
    reading_media,
    segment_middle_indices,
)

logger = logging.getLogger(__name__)

SAMPLING_MODES = ("middle", "random")
BACKENDS = ("pyav", "torchcodec", "decord")
DEFAULT_MIN_RESOLUTION = 8
DEFAULT_MAX_RESOLUTION = 8192

_INSTALL_HINTS = {
    "torchcodec": (
        "`pip install torchcodec` and FFmpeg's shared libraries (Debian 12: `apt-get install -y "
        "--no-install-recommends libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 "
        "libavfilter8`)"
    ),
    "decord": "`pip install decord`",
}
# Suffixes of the ISO media family, whose index (the `moov` box) is usually written last.
_MP4_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".3gp"})


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's header says: `num_frames` (counted from packets if the header has no count),
    `height`/`width` in pixels, `fps` and `duration` (seconds; `None` if unknown), the container `format` and the video
    `codec`. A truncated file may decode fewer than `num_frames` frames (`decode_clip` handles that). An image file is
    a 1-frame video with the image's format (e.g. `"png"`) and no fps, duration or codec."""

    num_frames: int
    height: int
    width: int
    fps: float | None
    duration: float | None
    format: str
    codec: str | None = None


def sample_frame_indices(
    total_frames: int, num_frames: int, mode: str = "middle", rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Indices of `num_frames` frames of a `total_frames`-frame video, one from each of `num_frames` equal segments.

    This is VindLU's sampling. `mode="middle"` (evaluation) takes the middle frame of each segment (see
    `segment_middle_indices`); `mode="random"` (training) takes a uniformly random frame of each segment, drawn from
    `rng` (a `np.random.Generator`, a seed, or `None` for fresh entropy), so a seeded generator gives the same
    indices every run. A video with fewer than `num_frames` frames yields every frame once and then repeats its last
    frame: the result always has exactly `num_frames` sorted entries.

    Example:

    ```python
    >>> sample_frame_indices(20, 4).tolist()
    [2, 7, 12, 17]
    >>> sample_frame_indices(2, 4, mode="random").tolist()
    [0, 1, 1, 1]
    >>> indices = sample_frame_indices(20, 4, mode="random", rng=np.random.default_rng(0))
    >>> all(5 * i <= index < 5 * (i + 1) for i, index in enumerate(indices))
    True
    ```
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"mode must be one of {SAMPLING_MODES}, got {mode!r}.")
    if mode == "middle":
        return segment_middle_indices(total_frames, num_frames)
    for name, value in (("total_frames", total_frames), ("num_frames", num_frames)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    rng = np.random.default_rng(rng)
    num_segments = min(num_frames, total_frames)
    # Same segment bounds as the middle mode; every segment holds at least one frame since num_segments <= total.
    bounds = np.linspace(0, total_frames, num_segments + 1).astype(int)
    # VindLU draws from range(start, end - 1) and so never picks a segment's last frame; every frame is fair here.
    indices = rng.integers(bounds[:-1], bounds[1:])
    return np.concatenate([indices, np.full(num_frames - num_segments, indices[-1])]).astype(int)


def _check_resolution(path: str, height: int, width: int, min_resolution: int, max_resolution: int) -> None:
    if not (min_resolution <= height <= max_resolution and min_resolution <= width <= max_resolution):
        raise VideoDecodeError(
            path,
            f"resolution {width}x{height} (width x height) is outside the allowed {min_resolution}..{max_resolution} "
            "px per side (min_resolution / max_resolution).",
        )


def _unopenable_reason(path: str, error: Exception) -> str:
    """Why FFmpeg could not open `path`, as specific as its first bytes allow."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head.startswith(b"version https://git-lfs"):
        return "this is a Git LFS pointer, not the video itself (run `git lfs pull`)."
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return f"this looks like a text file, not a video (FFmpeg: {error})."
        except UnicodeDecodeError:
            pass
    if os.path.splitext(path)[1].lower() in _MP4_SUFFIXES and head[4:8] == b"ftyp":
        # FFmpeg writes the index (moov box) at the end: a cut-off download has frames but no index.
        return f"this MP4 has no index (moov box): the file is probably truncated (FFmpeg: {error})."
    return f"FFmpeg cannot read this file: unsupported container or corrupt data (FFmpeg: {error})."


def _count_packets(container, stream) -> int:
    # Demuxing reads packets without decoding them; the final flush packet is empty.
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


def probe_video(
    path: str | os.PathLike,
    min_resolution: int = DEFAULT_MIN_RESOLUTION,
    max_resolution: int = DEFAULT_MAX_RESOLUTION,
) -> VideoInfo:
    """Read a video's (or image's) frame count, size, frame rate and format without decoding its frames.

    Raises:
        FileNotFoundError: the file does not exist.
        VideoDecodeError: (a `ValueError`) naming the file and the problem: an empty file, data FFmpeg cannot read
            (corrupt bytes, a text file, an unsupported container, an MP4 cut off before its index), no video stream
            (e.g. audio only), 0 frames, or a resolution outside `min_resolution`..`max_resolution` px per side.
    """
    if not 1 <= min_resolution <= max_resolution:
        raise ValueError(
            f"Need 1 <= min_resolution <= max_resolution, got min_resolution={min_resolution}, "
            f"max_resolution={max_resolution}."
        )
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Video file not found: {path}")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes).")
    if os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES:
        info = _probe_image(path)
    else:
        info = _probe_container(path)
    _check_resolution(path, info.height, info.width, min_resolution, max_resolution)
    return info


def _probe_image(path: str) -> VideoInfo:
    # Reads the header only; PIL refuses a decompression bomb (over 2x Image.MAX_IMAGE_PIXELS) already here.
    with reading_media(path, "PIL cannot read this image"):
        with PIL.Image.open(path) as image:
            width, height = image.size
            image_format = (image.format or "image").lower()
    return VideoInfo(num_frames=1, height=height, width=width, fps=None, duration=None, format=image_format)


def _probe_container(path: str) -> VideoInfo:
    with reading_media(path, "FFmpeg cannot open this file"):
        try:
            container = av.open(path)
        except av.FFmpegError as error:
            raise VideoDecodeError(path, _unopenable_reason(path, error)) from error
    # Corrupt metadata fails outside FFmpeg too (a UnicodeDecodeError decoding a tag, no codec_context, ...).
    with reading_media(path, "could not read the container"), container:
        stream = first_video_stream(container, path)
        num_frames = stream.frames or _count_packets(container, stream)
        if num_frames == 0:
            raise VideoDecodeError(path, "the video stream has 0 frames.")
        fps = float(stream.average_rate) if stream.average_rate else None
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = num_frames / fps if fps else None
        return VideoInfo(
            num_frames=num_frames,
            height=stream.height,
            width=stream.width,
            fps=fps,
            duration=duration,
            format=container.format.name,
            codec=stream.codec_context.name,
        )


def _decode_pyav(
    path: str,
    indices: np.ndarray,
    total: int | None = None,
    resample: Callable[[int], np.ndarray] | None = None,
    strategy: str = "auto",
    threads: int = 1,
) -> np.ndarray:
    """PyAV via `load_video_file`, which seeks or decodes in one pass, whichever the keyframe layout makes cheaper.

    When a file decodes fewer frames than its header's `total` (truncated), `load_video_file` asks for indices again
    with the true frame count: `resample(count)` answers, as `decode_clip` does for the other backends.
    """

    def sample_indices_fn(metadata):
        if resample is None or metadata.total_num_frames == total:
            return indices
        return resample(metadata.total_num_frames)

    frames, _ = load_video_file(path, sample_indices_fn, threads=threads, strategy=strategy)
    return frames


def _decode_torchcodec(path: str, indices: np.ndarray) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    # "exact" builds a frame index from the packets (no decoding), so frame i is the i-th frame even at a variable
    # frame rate; 0 threads lets FFmpeg choose, like PyAV.
    decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=0)
    unique, inverse = np.unique(indices, return_inverse=True)
    return decoder.get_frames_at(unique.tolist()).data.numpy()[inverse]


def _decode_decord(path: str, indices: np.ndarray) -> np.ndarray:
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0))
    unique, inverse = np.unique(indices, return_inverse=True)
    return reader.get_batch(unique.tolist()).asnumpy()[inverse]


# PyAV is called apart: it re-samples itself when a file ends early.
_DECODERS: dict[str, Callable[[str, np.ndarray], np.ndarray]] = {
    "torchcodec": _decode_torchcodec,
    "decord": _decode_decord,
}


def _check_backend(backend: str) -> None:
    """Raise `ValueError` for an unknown backend name and `ImportError` (saying what to install) for a missing one."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if backend == "pyav":
        return
    try:
        if backend == "torchcodec":
            import torchcodec.decoders  # noqa: F401
        else:
            import decord  # noqa: F401
    # torchcodec raises RuntimeError/OSError at import when FFmpeg's shared libraries are missing.
    except (ImportError, OSError, RuntimeError) as error:
        raise ImportError(
            f"backend={backend!r} needs {backend}, which cannot be imported ({error}). Install it with "
            f"{_INSTALL_HINTS[backend]}, or use backend='pyav'."
        ) from error


def available_backends() -> list[str]:
    """The names in `BACKENDS` that can be used in this environment (always includes `"pyav"`)."""
    available = []
    for backend in BACKENDS:
        try:
            _check_backend(backend)
        except ImportError:
            continue
        available.append(backend)
    return available


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    logger.warning(message)


def _count_decodable_frames(path: str) -> int:
    """Frames PyAV decodes from the start before the data ends or breaks."""
    count = 0
    try:
        with av.open(path) as container:
            for _ in container.decode(video=0):
                count += 1
    except Exception:  # noqa: BLE001 -- any break (a truncated last packet, corrupt data): the frames before are good
        pass
    return count


def decode_clip(
    path: str | os.PathLike,
    num_frames: int,
    mode: str = "middle",
    backend: str = "pyav",
    rng: np.random.Generator | int | None = None,
    min_resolution: int = DEFAULT_MIN_RESOLUTION,
    max_resolution: int = DEFAULT_MAX_RESOLUTION,
    strategy: str = "auto",
    threads: int = 1,
) -> np.ndarray:
    """Decode `num_frames` frames of a video file, sampled with `sample_frame_indices(total, num_frames, mode, rng)`.

    Only the sampled frames are decoded, not the whole file. With PyAV, `strategy="auto"` seeks to the keyframe
    before each sampled frame when that decodes fewer frames than one pass from the start, and decodes in one pass
    otherwise (few keyframes); `"seek"` / `"sequential"` force one (see `load_video_file`). PyAV decodes with
    `threads` threads (1: DataLoader workers already decode clips in parallel; 0 lets FFmpeg use every core, faster
    for one process decoding one clip at a time). `backend` is
    `"pyav"` (default), `"torchcodec"` or `"decord"`; they return identical frames for the same file. Image files
    (`.jpg`, `.png`, ...) are 1-frame videos, so every frame is that image, whatever the backend.

    A damaged file that decodes fewer frames than its header claims (e.g. a download cut short) is sampled again from
    the frames that really decode, with PyAV, and a warning is logged; a file with no decodable frame raises.

    decord returns wrong frames when it seeks in h264 AVI files, so those are decoded with PyAV (a warning says so).

    Returns:
        uint8 RGB frames of shape (num_frames, height, width, 3).

    Raises:
        FileNotFoundError: the file does not exist.
        VideoDecodeError: the file cannot be used (see `probe_video`) or no frame of it decodes; any failure to
            read the file is this error, whatever the backend.
        ValueError: an unknown `mode` or `backend`, or a bad `num_frames`.
        ImportError: the backend is not installed (the message says what to install).

    Example:

    ```python
    >>> clip = decode_clip("video7010.mp4", 8, mode="random", rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> clip.shape, clip.dtype  # doctest: +SKIP
    ((8, 240, 320, 3), dtype('uint8'))
    ```
    """
    path = os.fspath(path)
    if mode not in SAMPLING_MODES:
        raise ValueError(f"mode must be one of {SAMPLING_MODES}, got {mode!r}.")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if strategy not in DECODE_STRATEGIES:
        raise ValueError(f"strategy must be one of {DECODE_STRATEGIES}, got {strategy!r}.")
    info = probe_video(path, min_resolution=min_resolution, max_resolution=max_resolution)
    indices = sample_frame_indices(info.num_frames, num_frames, mode, rng)
    if os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES:
        # A truncated PNG reads its header but not its pixels: load_video_file raises VideoDecodeError.
        frames, _ = load_video_file(path, lambda metadata: indices)
        return frames
    _check_backend(backend)
    if backend == "decord" and info.format == "avi" and info.codec == "h264":
        # Seen with decord 0.6.0 and keyframes every few frames; mp4/mkv and mpeg4-in-AVI decode correctly.
        _warn_once("decord returns wrong frames when it seeks in h264 AVI files; decoding those with PyAV instead.")
        backend = "pyav"
    if backend == "pyav":  # recovers truncated files itself and raises VideoDecodeError for the rest
        resample = functools.partial(sample_frame_indices, num_frames=num_frames, mode=mode, rng=rng)
        return _decode_pyav(path, indices, info.num_frames, resample, strategy, threads)
    try:
        return _DECODERS[backend](path, indices)
    except Exception as error:  # each backend fails differently on a truncated file; count what really decodes
        decodable = _count_decodable_frames(path)
        if decodable == 0:
            raise VideoDecodeError(path, f"no frame decodes ({backend}: {error}).") from error
        if decodable >= info.num_frames:  # the file is whole: the backend failed for another reason
            raise VideoDecodeError(path, f"{backend} could not decode frames {indices.tolist()}: {error}") from error
    logger.warning(
        "%s: the header says %d frames but only %d decode (truncated file?); sampling from those with PyAV.",
        path,
        info.num_frames,
        decodable,
    )
    indices = sample_frame_indices(decodable, num_frames, mode, rng)
    return _decode_pyav(path, indices)


__all__ = [
    "BACKENDS",
    "DECODE_STRATEGIES",
    "SAMPLING_MODES",
    "VideoDecodeError",
    "VideoInfo",
    "available_backends",
    "decode_clip",
    "probe_video",
    "sample_frame_indices",
]
