"""Video processor for T2V2T: sample `num_frames` frames per clip, resize, rescale and normalise them.

Follows the VindLU evaluation pipeline: the clip is cut into `num_frames` equal segments and the middle frame of each
is kept, every frame is resized (bicubic) to the model's `image_size`, and pixels are normalised with the statistics
of the BEiT checkpoint the video encoder starts from (mean = std = 0.5).

Video files are decoded with PyAV, which bundles its own FFmpeg (transformers decodes paths with torchcodec only).
"""

import bisect
import contextlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
import PIL.Image
import torch
from transformers import AutoImageProcessor
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    ChannelDimension,
    PILImageResampling,
)
from transformers.utils import logging
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata, make_batched_metadata

from .configuration_t2v2t import T2V2TVisionConfig

logger = logging.get_logger(__name__)

# PyAV 18 converts a frame with its own thread pool unless told otherwise: ~7 ms per call instead of ~0.2 ms.
_RGB = {"format": "rgb24", "threads": 1}
# Files with these suffixes are opened with PIL as 1-frame videos; everything else goes to PyAV.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# Channel counts a frame may have: grayscale, RGB, RGBA (`do_convert_rgb` turns the others into RGB).
_VALID_CHANNELS = (1, 3, 4)
# What reading damaged bytes raises besides FFmpeg's own errors: PyAV decodes corrupt metadata strings
# (UnicodeDecodeError), leaves `codec_context` as None when no decoder exists (AttributeError), PIL raises
# SyntaxError/struct.error on broken headers and DecompressionBombError on huge images. TypeError is left out: it
# means a bug in the caller, not a bad file.
_READ_ERRORS = (
    av.FFmpegError,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    AttributeError,
    IndexError,
    KeyError,
    OverflowError,
    ZeroDivisionError,
    MemoryError,
    SyntaxError,
    struct.error,
    PIL.Image.DecompressionBombError,
)


class VideoDecodeError(ValueError):
    """A video (or image) file that cannot be read; `path` is the file, `reason` the problem.

    Every media entry point (`load_video_file`, the video processor, `processing.decoding.decode_clip`, the data
    collators, `VideoRetriever.index_videos`) raises this one error for a file it cannot read.

    A DataLoader re-raises a worker's error as `type(error)(message)`: built from one message, `path` is `None`
    and the message (which names the file) is the reason.
    """

    def __init__(self, path: str | os.PathLike, reason: str | None = None):
        if reason is None:
            self.path, self.reason = None, str(path)
            super().__init__(self.reason)
            return
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across process pools
        return type(self), (self.path, self.reason) if self.path is not None else (self.reason,)


@contextlib.contextmanager
def reading_media(path: str, what: str = "could not read the file"):
    """Turn any error of reading `path` (see `_READ_ERRORS`) into a `VideoDecodeError` naming the file."""
    try:
        yield
    except VideoDecodeError:
        raise
    except _READ_ERRORS as error:
        raise VideoDecodeError(path, f"{what} ({type(error).__name__}: {error}).") from error


def segment_middle_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """Indices of the middle frame of each of `num_frames` equal segments of a `total_frames`-frame video.

    This is VindLU's evaluation sampling. A video with fewer than `num_frames` frames yields every frame once and then
    repeats its last frame, so the result always has exactly `num_frames` entries.

    Example:

    ```python
    >>> segment_middle_indices(20, 4).tolist()
    [2, 7, 12, 17]
    >>> segment_middle_indices(2, 4).tolist()
    [0, 1, 1, 1]
    ```
    """
    for name, value in (("total_frames", total_frames), ("num_frames", num_frames)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    num_segments = min(num_frames, total_frames)
    bounds = np.linspace(0, total_frames, num_segments + 1).astype(int)
    indices = (bounds[:-1] + bounds[1:] - 1) // 2
    return np.concatenate([indices, np.full(num_frames - num_segments, indices[-1])]).astype(int)


def _is_path(video) -> bool:
    return isinstance(video, (str, os.PathLike))


def _is_array(video) -> bool:
    return isinstance(video, (np.ndarray, torch.Tensor))


def _is_frame(item) -> bool:
    return isinstance(item, PIL.Image.Image) or (_is_array(item) and item.ndim == 3)


def _frame_to_array(frame):
    return np.asarray(frame.convert("RGB")) if isinstance(frame, PIL.Image.Image) else frame


def _stack_frames(frames: list):
    frames = [_frame_to_array(frame) for frame in frames]
    if all(isinstance(frame, torch.Tensor) for frame in frames):
        return torch.stack(frames)
    return np.stack([np.asarray(frame) for frame in frames])


def _as_video(video, name: str):
    """One video as a file path (`str`) or a 4-D array/tensor with time first."""
    if _is_path(video):
        return os.fspath(video)
    if isinstance(video, PIL.Image.Image):
        return _stack_frames([video])
    if isinstance(video, (list, tuple)) and video and all(_is_frame(frame) for frame in video):
        return _stack_frames(list(video))
    if _is_array(video):
        if video.ndim == 3:  # a single image is a 1-frame video
            return video[None]
        if video.ndim == 4:
            return video
        raise ValueError(
            f"{name} must be a 4-D video (T, H, W, C) / (T, C, H, W) or a 3-D image, got an array of shape "
            f"{tuple(video.shape)}."
        )
    raise TypeError(
        f"{name} must be a file path, an array/tensor, a PIL image or a list of frames, got {type(video).__name__}."
    )


def make_video_list(videos) -> list:
    """Turn any accepted `videos` input into a list of videos, each a file path or a 4-D array/tensor (T, ...).

    A list whose items are all frames (PIL images or 3-D arrays) is ONE video, as in transformers; any other list is
    a batch. A 5-D array is a batch of 4-D videos.
    """
    if _is_array(videos) and videos.ndim == 5:
        return list(videos)
    if isinstance(videos, (list, tuple)):
        if not videos:
            raise ValueError("videos is an empty list.")
        if not all(_is_frame(item) for item in videos):
            return [_as_video(video, f"videos[{index}]") for index, video in enumerate(videos)]
    return [_as_video(videos, "videos")]


# How `load_video_file` reaches the sampled frames: "seek" (to the keyframe before each), "sequential" (one pass from
# the start) or "auto" (whichever the keyframe layout makes cheaper, see `_seeking_pays`).
DECODE_STRATEGIES = ("auto", "seek", "sequential")
# A seek (demuxer jump + decoder flush + a new keyframe) costs about as much as decoding this many more frames in one
# pass: ~0.95 ms per seek against 0.11-0.17 ms per frame, measured in CPU time on 320x240 h264 clips with PyAV 18
# (mp4 and mkv alike). Larger frames make a seek relatively cheaper, so 8 leans towards one pass.
_SEEK_COST_FRAMES = 8


@dataclass
class _PacketScan:
    count: int  # packets with data, i.e. frames
    origin: int | None  # presentation timestamp of frame 0
    keyframes: list[int]  # presentation timestamps of keyframes, ascending


def _scan_packets(container, stream) -> _PacketScan:
    """One demux pass, reading packets without decoding them (the final flush packet is empty).

    It gives the frame count when the header has none (mkv/webm) and the keyframe layout for seeking.
    """
    count, origin, keyframes = 0, None, []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        count += 1
        if packet.pts is not None:
            origin = packet.pts if origin is None else min(origin, packet.pts)
            if packet.is_keyframe:
                keyframes.append(packet.pts)
    return _PacketScan(count, origin, sorted(keyframes))


def _keyframe_numbers(stream, scan: _PacketScan) -> tuple[float, list[int]] | None:
    """`(timestamp ticks per frame, frame number of each keyframe)`, or `None` when timestamps do not map onto
    frame numbers. Numbers count from the first frame's timestamp, not `stream.start_time` (some AVI files start at
    pts 1 while the stream says 0)."""
    rate, time_base = stream.average_rate, stream.time_base
    if not rate or not time_base or scan.origin is None or not scan.keyframes:
        return None
    ticks_per_frame = 1 / (rate * time_base)
    return ticks_per_frame, [round((pts - scan.origin) / ticks_per_frame) for pts in scan.keyframes]


def _seeking_pays(keyframe_numbers: list[int], indices: np.ndarray) -> bool:
    """Whether seeking decodes less than one pass up to the last sampled frame, counting each extra seek as
    `_SEEK_COST_FRAMES` frames. Mirrors `_decode_by_seeking`: it seeks only past frames it would otherwise decode.
    With few keyframes (e.g. x264's 250-frame default on a 10-s clip) seeking saves nothing and one pass wins."""
    position, decoded, seeks = -1, 0, 0
    for target in sorted(set(indices.tolist())):
        keyframe = bisect.bisect_right(keyframe_numbers, target) - 1
        if seeks == 0 or (keyframe >= 0 and keyframe_numbers[keyframe] > position + 1):
            seeks += 1
            position = min(keyframe_numbers[max(keyframe, 0)], target) - 1
        decoded += max(target - position, 0)
        position = max(position, target)
    one_pass = int(indices.max()) + 1
    return decoded + _SEEK_COST_FRAMES * (seeks - 1) < one_pass


def _decode_by_seeking(
    container, stream, indices: np.ndarray, scan: _PacketScan, numbering: tuple[float, list[int]]
) -> dict[int, np.ndarray] | None:
    """Decode the frames at `indices`, seeking forward; `None` when timestamps do not map onto frame numbers or the
    data breaks (the caller then decodes in order, which also finds where a damaged file ends).

    A seek lands on the keyframe before its target, so it is taken only when that keyframe lies beyond the frame
    just decoded: no frame is decoded twice (torchcodec's strategy).
    """
    ticks_per_frame, keyframe_numbers = numbering
    wanted, frames = set(indices.tolist()), {}
    decoder, position = None, -1  # position: number of the last decoded frame
    try:
        for target in sorted(wanted):
            keyframe = bisect.bisect_right(keyframe_numbers, target) - 1
            if decoder is None or (keyframe >= 0 and keyframe_numbers[keyframe] > position + 1):
                container.seek(scan.keyframes[max(keyframe, 0)], stream=stream, backward=True)
                decoder = container.decode(stream)
            for frame in decoder:
                if frame.pts is None:
                    return None
                position = round((frame.pts - scan.origin) / ticks_per_frame)
                if position in wanted:
                    frames.setdefault(position, frame.to_ndarray(**_RGB))
                if position >= target:
                    break
    except _READ_ERRORS:
        return None
    # Variable frame rates, odd headers or a cut-off file leave holes: the caller then decodes in order.
    return frames if wanted <= frames.keys() else None


def _decode_in_order(container, stream, indices: np.ndarray) -> tuple[dict[int, np.ndarray], int, Exception | None]:
    """Decode from the start up to the last wanted frame. Returns the frames, how many frames were decoded, and the
    error that stopped decoding early (a truncated or damaged file), if any."""
    container.seek(0)
    wanted, last, frames = set(indices.tolist()), int(indices.max()), {}
    decoded = 0
    try:
        for decoded, frame in enumerate(container.decode(stream), start=1):
            if decoded - 1 in wanted:
                frames[decoded - 1] = frame.to_ndarray(**_RGB)
            if decoded - 1 == last:
                break
    except _READ_ERRORS as error:  # the frames before the break are good
        return frames, decoded, error
    return frames, decoded, None


def _sample(sample_indices_fn: Callable | None, metadata: VideoMetadata) -> np.ndarray:
    if sample_indices_fn is None:  # do_sample_frames=False: keep every frame
        return np.arange(metadata.total_num_frames)
    return np.asarray(sample_indices_fn(metadata=metadata), dtype=int)


def _load_image_file(path: str, sample_indices_fn: Callable | None) -> tuple[np.ndarray, VideoMetadata]:
    # PIL raises DecompressionBombError for an image over 2x Image.MAX_IMAGE_PIXELS before decoding it.
    with reading_media(path, "PIL cannot read this image"):
        with PIL.Image.open(path) as image:
            frame = np.asarray(image.convert("RGB"))
    metadata = VideoMetadata(total_num_frames=1, height=frame.shape[0], width=frame.shape[1], video_backend="pil")
    metadata.frames_indices = _sample(sample_indices_fn, metadata).tolist()
    return frame[None][metadata.frames_indices], metadata


def first_video_stream(container, path: str):
    """The first video stream of an open PyAV `container`; `VideoDecodeError` if there is none or FFmpeg has no
    decoder for it."""
    if not container.streams.video:
        kinds = [stream.type for stream in container.streams]
        found = f"only {', '.join(kinds)} stream(s)" if kinds else "no streams at all"
        raise VideoDecodeError(path, f"no video stream ({found}).")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoDecodeError(path, "FFmpeg has no decoder for the video stream's codec.")
    return stream


def _open_stream(container, path: str, threads: int):
    """`(stream, header frame count, packet scan, metadata)` of the first video stream; raises `VideoDecodeError`
    for a file without a usable one."""
    stream = first_video_stream(container, path)
    # One decoding thread by default: FFmpeg's automatic thread pool costs ~10 ms per open, more than decoding a
    # short clip, and DataLoader workers already decode clips in parallel.
    stream.codec_context.thread_count = threads
    header_count = stream.frames
    scan = _scan_packets(container, stream)
    total = header_count or scan.count
    if total == 0:
        raise VideoDecodeError(path, "the video stream has 0 frames.")
    fps = float(stream.average_rate) if stream.average_rate else None
    metadata = VideoMetadata(
        total_num_frames=total,
        fps=fps,
        duration=total / fps if fps else None,
        height=stream.height,
        width=stream.width,
        video_backend="pyav",
    )
    return stream, header_count, scan, metadata


def load_video_file(
    path: str | os.PathLike, sample_indices_fn: Callable | None = None, threads: int = 1, strategy: str = "auto"
) -> tuple[np.ndarray, VideoMetadata]:
    """Decode the frames `sample_indices_fn(metadata=...)` asks for (all frames if it is `None`) from a video file.

    Only the needed frames are decoded. A packet scan (no decoding) gives the frame count when the header has none
    (mkv/webm) and the keyframe layout; `strategy="auto"` then seeks to the keyframe before each frame when that
    decodes less than one pass from the start, and decodes in one pass otherwise (`"seek"` / `"sequential"` force
    one). A damaged file that decodes fewer frames than its header claims (e.g. a download cut short) is sampled
    again from the frames that really decode, with a warning. Image files (`IMAGE_SUFFIXES`) are 1-frame videos.

    Returns:
        `(frames, metadata)`: uint8 RGB frames of shape (T, H, W, 3) and the video's `VideoMetadata`.

    Raises:
        FileNotFoundError: the file does not exist.
        VideoDecodeError: (a `ValueError`) naming the file and the reason, for any file that cannot be read: empty,
            corrupt or unsupported data, corrupt metadata, no video stream or decoder, 0 frames, no decodable frame,
            an image PIL refuses (including decompression bombs).
    """
    path = os.fspath(path)
    if strategy not in DECODE_STRATEGIES:
        raise ValueError(f"strategy must be one of {DECODE_STRATEGIES}, got {strategy!r}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Video file not found: {path}")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes).")
    if os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES:
        return _load_image_file(path, sample_indices_fn)
    with reading_media(path, "FFmpeg cannot open this file: unsupported container or corrupt data"):
        container = av.open(path)
    with container:
        with reading_media(path, "could not read the container"):
            stream, header_count, scan, metadata = _open_stream(container, path, threads)
        total = metadata.total_num_frames
        indices = _sample(sample_indices_fn, metadata)
        frames = None
        if sample_indices_fn is not None and strategy != "sequential":
            with reading_media(path, "could not read the container"):
                numbering = _keyframe_numbers(stream, scan)
            if numbering is not None and (strategy == "seek" or _seeking_pays(numbering[1], indices)):
                frames = _decode_by_seeking(container, stream, indices, scan, numbering)
        if frames is None:
            with reading_media(path, "could not decode the video"):
                frames, decoded, error = _decode_in_order(container, stream, indices)
            if decoded <= indices.max():
                if decoded == 0:
                    reason = f"{type(error).__name__}: {error}" if error else "the stream ends before its first frame"
                    raise VideoDecodeError(path, f"no frame decodes ({reason}).")
                logger.warning(
                    f"{path}: the header says {total} frames but only {decoded} decode (truncated file?); sampling "
                    "from those."
                )
                metadata.total_num_frames = decoded
                indices = _sample(sample_indices_fn, metadata)
                with reading_media(path, "could not decode the video"):
                    frames, _, _ = _decode_in_order(container, stream, indices)
    metadata.frames_indices = indices.tolist()
    return np.stack([frames[index] for index in metadata.frames_indices]), metadata


def _is_channels_last(video, input_data_format, name: str) -> bool:
    if input_data_format is not None:
        channels_last = ChannelDimension(input_data_format) == ChannelDimension.LAST
        if video.shape[-1 if channels_last else 1] in _VALID_CHANNELS:
            return channels_last
    # Without a hint, numpy frames are read as (T, H, W, C) and torch tensors as (T, C, H, W) first.
    elif isinstance(video, np.ndarray) and video.shape[-1] in _VALID_CHANNELS:
        return True
    elif video.shape[1] in _VALID_CHANNELS:
        return False
    elif video.shape[-1] in _VALID_CHANNELS:
        return True
    # Name the frame shape: the time axis has already been sampled.
    raise ValueError(
        f"{name} has frames of shape {tuple(video.shape[1:])} with no channel axis of size {_VALID_CHANNELS} "
        f"(input_data_format={input_data_format}); expected (T, H, W, C) arrays or (T, C, H, W) tensors."
    )


class T2V2TVideoProcessor(BaseVideoProcessor):
    r"""
    Video processor for T2V2T. Samples `num_frames` frames per video (middle frame of equal segments, see
    `segment_middle_indices`), resizes them to `size` with bicubic interpolation, rescales to [0, 1] and normalises
    with `image_mean`/`image_std` (0.5, the BEiT checkpoint's statistics). Returns `pixel_values_videos` of shape
    (B, T, C, H, W).

    Accepts one video or a batch: uint8 numpy arrays (T, H, W, C), uint8 torch tensors (T, C, H, W), lists of PIL
    images (one video), a single image (a 1-frame video), and video or image file paths (`str` / `pathlib.Path`,
    decoded with PyAV). A video shorter than `num_frames` repeats its last frame.

    Keep `num_frames` and `size` in line with the model: build the processor with `from_vision_config` and check an
    existing one with `check_compatible`.

    Example:

    ```python
    >>> import numpy as np
    >>> from modeling_t2v2t import T2V2TVideoProcessor
    >>> processor = T2V2TVideoProcessor(num_frames=4)
    >>> video = np.zeros((20, 48, 64, 3), dtype=np.uint8)  # (T, H, W, C)
    >>> processor(video)["pixel_values_videos"].shape
    torch.Size([1, 4, 3, 224, 224])
    ```
    """

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = False
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 4  # = T2V2TVisionConfig.num_frames

    @classmethod
    def from_vision_config(cls, vision_config: T2V2TVisionConfig, **overrides) -> "T2V2TVideoProcessor":
        """A processor whose `num_frames` and `size` are the config's `num_frames` and `image_size`.

        `vision_config` may also be a `T2V2TConfig` (its `vision_config` is used). `overrides` are any other
        processor settings, e.g. `image_mean`.
        """
        vision_config = getattr(vision_config, "vision_config", vision_config)
        image_size = vision_config.image_size
        return cls(
            **{"num_frames": vision_config.num_frames, "size": {"height": image_size, "width": image_size}, **overrides}
        )

    @classmethod
    def from_image_processor(cls, image_processor, geometry: bool = False, **overrides) -> "T2V2TVideoProcessor":
        """A processor using the normalisation (`image_mean`, `image_std`, `resample`) of an image checkpoint.

        `image_processor` is an image processor or a local folder / Hub id whose `preprocessor_config.json`
        `AutoImageProcessor` can load (e.g. a BEiT or ViT checkpoint). With `geometry=True` its resize and crop are
        taken too (`do_resize`, `size`, `do_center_crop`, `crop_size`): a CLIP processor's shortest-edge resize and
        centre crop, so frames are preprocessed as CLIP's own processor preprocesses images (X-Pool on CLIP).
        Without it, frames are resized to `size` (square by default), VindLU's preprocessing. `overrides` set
        anything else, e.g. `num_frames`, and win over the image processor's values.
        """
        if isinstance(image_processor, (str, os.PathLike)):
            image_processor = AutoImageProcessor.from_pretrained(image_processor)
        names = ("image_mean", "image_std", "resample")
        if geometry:
            names += ("do_resize", "size", "do_center_crop", "crop_size")
        taken = {key: getattr(image_processor, key) for key in names if getattr(image_processor, key, None) is not None}
        for key in ("size", "crop_size"):  # SizeDict -> the plain dict the constructor takes
            if key in taken and not isinstance(taken[key], dict):
                taken[key] = {name: value for name, value in dict(taken[key]).items() if value is not None}
        logger.info(f"Taking {taken} from {type(image_processor).__name__}.")
        return cls(**{**taken, **overrides})

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the frames this processor outputs."""
        if self.do_center_crop:
            return self.crop_size.height, self.crop_size.width
        if not self.do_resize or self.size.height is None or self.size.width is None:
            raise ValueError(
                f"The output frame size depends on the input (do_resize={self.do_resize}, size={dict(self.size)}); "
                "set size={'height': H, 'width': W}."
            )
        return self.size.height, self.size.width

    def check_compatible(self, vision_config: T2V2TVisionConfig) -> None:
        """Raise `ValueError` if this processor's frames do not have the model's `image_size`.

        A different frame count only logs a warning: the model takes the first rows of its temporal position embedding
        (fewer frames) or interpolates it (more frames).
        `vision_config` may also be a `T2V2TConfig`.
        """
        vision_config = getattr(vision_config, "vision_config", vision_config)
        height, width = self.output_size
        image_size = vision_config.image_size
        if (height, width) != (image_size, image_size):
            raise ValueError(
                f"{type(self).__name__} outputs {height}x{width} frames but the vision config has "
                f"image_size={image_size}; build the processor with `from_vision_config(config)`."
            )
        if self.num_frames != vision_config.num_frames:
            logger.warning(
                f"{type(self).__name__} samples num_frames={self.num_frames} frames but the model was configured for "
                f"num_frames={vision_config.num_frames}; its temporal position embedding will be cut to the first rows "
                "(fewer frames) or interpolated (more frames)."
            )

    def preprocess(self, videos, **kwargs) -> BatchFeature:
        # One (B, T, C, H, W) tensor by default instead of transformers' list of per-video tensors.
        kwargs.setdefault("return_tensors", "pt")
        return super().preprocess(videos, **kwargs)

    def sample_frames(self, metadata: VideoMetadata, num_frames: int | None = None, fps=None, **kwargs) -> np.ndarray:
        """Indices of the middle frame of `num_frames` equal segments (see `segment_middle_indices`)."""
        if fps is not None:
            raise ValueError("T2V2TVideoProcessor samples a fixed `num_frames` per video; `fps` is not supported.")
        num_frames = num_frames if num_frames is not None else self.num_frames
        return segment_middle_indices(metadata.total_num_frames, num_frames)

    def _decode_and_sample_videos(self, videos, video_metadata=None, do_sample_frames=None, sample_indices_fn=None):
        # Replaces the base version to decode paths with PyAV, accept single images and give errors that name the input.
        videos = make_video_list(videos)
        if video_metadata is not None:
            video_metadata = make_batched_metadata(videos, video_metadata=video_metadata)
        if not do_sample_frames:
            sample_indices_fn = None
        sampled_videos, sampled_metadata = [], []
        for index, video in enumerate(videos):
            if isinstance(video, str):
                video, metadata = load_video_file(video, sample_indices_fn)
            else:
                metadata = video_metadata[index] if video_metadata is not None else VideoMetadata(len(video))
                indices = _sample(sample_indices_fn, metadata)
                video = video[torch.as_tensor(indices)] if isinstance(video, torch.Tensor) else video[indices]
                metadata.frames_indices = indices.tolist()
            sampled_videos.append(video)
            sampled_metadata.append(metadata)
        return sampled_videos, sampled_metadata

    def _prepare_input_videos(self, videos, do_convert_rgb=None, input_data_format=None, device=None):
        """Turn each (T, ...) array/tensor into a (T, C, H, W) tensor, checking its channel axis."""
        prepared = []
        for index, video in enumerate(videos):
            channels_last = _is_channels_last(video, input_data_format, f"videos[{index}]")
            if isinstance(video, np.ndarray):
                video = torch.from_numpy(np.ascontiguousarray(video))
            if channels_last:
                video = video.permute(0, 3, 1, 2)
            video = video.contiguous()
            if do_convert_rgb:
                video = self.convert_to_rgb(video)
            if device is not None:
                video = video.to(device)
            prepared.append(video)
        return prepared


__all__ = [
    "T2V2TVideoProcessor",
    "VideoDecodeError",
    "DECODE_STRATEGIES",
    "segment_middle_indices",
    "load_video_file",
    "first_video_stream",
    "reading_media",
    "make_video_list",
    "IMAGE_SUFFIXES",
]
