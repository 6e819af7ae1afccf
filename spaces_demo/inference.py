"""Inference behind the Space: load a T2V2T checkpoint folder, index a gallery of videos once, answer text queries.

Self-contained on purpose: a checkpoint folder under `checkpoints/` is a Hub-ready folder with the model's code
inside, loaded with `AutoModel`/`AutoProcessor.from_pretrained(folder, trust_remote_code=True)`, so the Space needs
transformers, torch, PyAV and gradio but not the `t2v2t` package. The index is kept in memory, in full: for a
gallery of tens of videos the whole `encode_video` output (mean and per-frame embeddings, and the video tokens the
joint encoder attends to) is small, so search, reranking and the per-frame relevance plot need no re-decoding. For
thousands of videos or more use `modeling_t2v2t.retrieval.retriever.VideoRetriever` (same scores, faiss, disk-backed index).

Scores, as the model defines them:

- embedding score: `text_embeds @ video_embeds`, the VTC similarity = the mean over the sampled frames of the
  cosine between the text embedding and each frame embedding, divided by the length of the mean frame embedding
  when the checkpoint normalises it (`config.video_pooling="normalized_mean"`, the default checkpoint's) (stage 1
  of retrieval);
- rerank score: the joint encoder's score `score_pairs(...).scores` (stage 2): by default the VTM log-odds plus the
  VTC logit (`config.rerank_score="vtm+vtc"`), or VindLU's VTM match logit alone (`"vtm"`);
- per-frame relevance: the cosine between the text embedding and each frame embedding (their mean, or that mean
  over the mean frame embedding's length, is the embedding score), and, for T2V2T's Bypass cross-attention, the
  share of attention each frame's tokens put on the bypass slot ("keep me unchanged") instead of the words.

Uploaded videos are validated on their content, not their header: a demux pass counts the packets and measures the
timestamps (capped, so a file of millions of tiny frames stops early), and the frames the model needs are decoded in
one metered pass that stops at `UploadLimits.max_decode_pixels`. Each upload is stored in a folder of its own
session, never served by path, and deleted when the session ends or after `UploadLimits.retention_seconds`. Error
messages name the file as the user called it, never a server path.

Images the app shows are written once as content-addressed PNG files (`DemoEngine.media_file`): the web server then
serves files that never change while being read, whatever the number of concurrent searches.
"""

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from transformers import AutoModel, AutoProcessor
from transformers.video_utils import VideoMetadata

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DEFAULT_CHECKPOINTS_DIR = HERE / "checkpoints"
DEFAULT_GALLERY_DIR = HERE / "gallery"
GALLERY_MANIFEST = "gallery.json"
METRICS_FILE = "test_results.json"
# Containers a browser upload is likely to be and FFmpeg (bundled with PyAV) reads.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")
RANK_BY = ("embedding", "rerank")
_DROPPED = re.compile(r"[,.'!?\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
# Anything that looks like an absolute path in an error message (FFmpeg and Python name the files they fail on).
_ABSOLUTE_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/](?:[^\s'\"<>|:]+[\\/])+[^\s'\"<>|:]*")

ProgressFn = Callable[[float, str], None]


class UploadError(ValueError):
    """An uploaded video that cannot be added; the message names the file (as the user named it) and the problem,
    never a server path."""

    def __init__(self, filename: str, reason: str):
        self.filename = filename
        self.reason = without_paths(reason)
        super().__init__(f"{filename}: {self.reason}")


def without_paths(text: str, replacement: str = "the file") -> str:
    """`text` with every absolute path replaced: error messages go to anonymous visitors."""
    return _ABSOLUTE_PATH.sub(replacement, str(text))


def clean_query(text: str) -> str:
    """Lower-case and strip punctuation as VindLU does before tokenising (the checkpoints were trained on cleaned
    captions). Same rules as `processing.text_cleaning.clean_caption`, copied so the Space needs no package."""
    text = _DROPPED.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class UploadLimits:
    """What an uploaded video may be. Sizes in bytes, durations in seconds, sides in pixels."""

    max_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 60.0
    # Counted packets, not the header's claim: 60 s at 60 fps.
    max_frames: int = 3600
    min_side: int = 16
    max_side: int = 4096
    # Decoding work per upload, in decoded pixels (frames x width x height): ~1080p for 10 s at 30 fps, a few
    # seconds of one CPU core. Checked before decoding from the measured frame count and during decoding.
    max_decode_pixels: int = 600_000_000
    max_per_session: int = 10
    # Stored uploads and the session images made from them are deleted this long after their last use.
    retention_seconds: float = 3600.0
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS

    def __post_init__(self):
        for name in ("max_bytes", "max_seconds", "max_frames", "min_side", "max_side", "max_decode_pixels",
                     "max_per_session", "retention_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"UploadLimits.{name}={getattr(self, name)!r} is invalid: must be positive.")


@dataclass(frozen=True)
class VideoRecord:
    """A searchable video: `video_id` (unique), its file, what it shows (`captions`, for gallery videos), `source`
    ("gallery" or "upload") and, for uploads, the SHA-256 of the file (its cache key)."""

    video_id: str
    path: str
    captions: tuple[str, ...] = ()
    source: str = "gallery"
    sha256: str | None = None

    @property
    def description(self) -> str:
        return self.captions[0] if self.captions else "(uploaded video)"


# The per-video joint-encoder cache fields of a T2V2T video encoding (`T2V2TModel.build_joint_cache`).
JOINT_CACHE_FIELDS = ("fusion_keys", "fusion_values", "t2v_queries", "t2v_bypass_logits")


@dataclass
class EncodedVideo:
    """One video as the model sees it: `frames` (T, H, W, 3) uint8, the resized frames the model got, their
    `frame_times` in seconds (`None` if unknown), `video_embed` (E,), `frame_embeds` (T, E) normalised, and
    `video_tokens` (T*L, D) for the joint encoder (`None` for a dual encoder), and `joint_cache`, the model's
    per-video joint-encoder work (`build_joint_cache` fields without the batch axis) so that reranking a query
    against this video does not redo it (`None` when the checkpoint's code has no such cache)."""

    record: VideoRecord
    frames: np.ndarray
    frame_times: list[float | None]
    video_embed: torch.Tensor
    frame_embeds: torch.Tensor
    video_tokens: torch.Tensor | None
    joint_cache: dict[str, torch.Tensor] | None = None


@dataclass
class FrameRelevance:
    """Per sampled frame of one video: `cosine` between the query and the frame embedding (their mean, divided
    by the mean frame embedding's length with `video_pooling="normalized_mean"`, is the embedding score) and
    `bypass_share`, the mean probability that the frame's tokens took the bypass in the text→video layers (`None`
    when the model has no bypass)."""

    video_id: str
    frames: np.ndarray
    frame_times: list[float | None]
    cosine: list[float]
    bypass_share: list[float] | None


@dataclass
class PatchAttention:
    """
    T2V2T's text→video attention for one (query, video) pair, averaged over heads and text→video layers, per patch
    of each sampled frame (the frames' [CLS] tokens are left out): `intake` (T, S, S) the share of attention a
    patch put on the query's tokens (1 - bypass; 1 everywhere without a bypass), and `word_share` (T, S, S, W) the
    share it put on each of the query's `words` (special tokens left out, so a row sums to at most `intake`).
    """

    video_id: str
    frames: np.ndarray
    frame_times: list[float | None]
    words: list[str]
    intake: np.ndarray
    word_share: np.ndarray
    has_bypass: bool

    def top_patches(self, count: int) -> list[tuple[int, int, int]]:
        """(frame, row, column) of the `count` patches that took in the most text, most first."""
        order = np.argsort(-self.intake, axis=None, kind="stable")[:count]
        return [tuple(int(i) for i in np.unravel_index(flat, self.intake.shape)) for flat in order]

    def top_words(self, frame: int, row: int, column: int, count: int = 3) -> list[tuple[str, float]]:
        """The `count` words this patch attended to most, with their shares (a word said twice adds up)."""
        totals: dict[str, float] = {}
        for word, share in zip(self.words, self.word_share[frame, row, column].tolist()):
            totals[word] = totals.get(word, 0.0) + share
        return sorted(totals.items(), key=lambda item: -item[1])[:count]

    def special_share(self, frame: int, row: int, column: int) -> float:
        """What the patch took in from the special tokens ([CLS], [SEP]): `intake` minus its word shares."""
        return float(self.intake[frame, row, column] - self.word_share[frame, row, column].sum())


@dataclass
class Hit:
    rank: int
    record: VideoRecord
    embedding_score: float
    rerank_score: float | None
    preview: np.ndarray  # the sampled frames as a grid


@dataclass
class SearchResult:
    query: str
    cleaned_query: str
    ranked_by: str
    hits: list[Hit]
    relevance: FrameRelevance | None
    unknown_words: list[str] = field(default_factory=list)
    num_searched: int = 0
    attention: PatchAttention | None = None  # for the best hit, T2V2T checkpoints only


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_gallery(gallery_dir: str | os.PathLike) -> list[VideoRecord]:
    """The gallery videos listed in `gallery_dir/gallery.json` (written by `prepare_assets.py`)."""
    gallery_dir = Path(gallery_dir)
    manifest = gallery_dir / GALLERY_MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"No gallery manifest at {manifest}: run spaces_demo/prepare_assets.py first.")
    data = json.loads(manifest.read_text(encoding="utf-8"))
    records, seen = [], set()
    for number, entry in enumerate(data.get("videos", [])):
        for key in ("video_id", "file"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ValueError(f"{manifest}: videos[{number}] has no {key!r} string.")
        path = gallery_dir / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{manifest}: videos[{number}] ({entry['video_id']}) lists {path}, which is "
                                    "missing.")
        if entry["video_id"] in seen:
            raise ValueError(f"{manifest}: video_id {entry['video_id']!r} is listed twice.")
        seen.add(entry["video_id"])
        records.append(VideoRecord(entry["video_id"], str(path), tuple(entry.get("captions", ()))))
    if not records:
        raise ValueError(f"{manifest} lists no videos.")
    return records


def frame_grid(frames: np.ndarray, columns: int | None = None, scale: int = 2) -> np.ndarray:
    """(T, H, W, 3) frames tiled in reading order (`columns` per row, default a near-square grid; unused tiles
    black), enlarged `scale` times with nearest-neighbour because the model's frames are tiny."""
    count, height, width, channels = frames.shape
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    grid = np.zeros((rows * height, columns * width, channels), dtype=frames.dtype)
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = frame
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def _av_failure(error: Exception) -> str:
    """A path-free reason for an FFmpeg/PyAV failure (FFmpeg errors carry the file name)."""
    if isinstance(error, av.FFmpegError):
        return f"corrupt data or an unsupported format (FFmpeg: {error.strerror or type(error).__name__})"
    return f"corrupt data or an unsupported format ({type(error).__name__}: {without_paths(error)})"


def measure_video(path: str, limits: UploadLimits, filename: str) -> dict:
    """
    What a video file really holds, measured from its packets rather than read from its header: `frames` (video
    packets), `duration` (their timestamp span, in seconds), `fps`, `width`/`height` (of the first decoded frame),
    `codec`. The demux pass stops as soon as the file exceeds `limits.max_frames` or `limits.max_seconds`, so a file
    of millions of tiny frames costs no more than a legitimate one.

    Raises:
        UploadError: not readable, no video stream, too long, too many frames, resolution out of bounds, no frame
            decodes, or more decoding work than `limits.max_decode_pixels`.
    """
    try:
        with av.open(path) as container:
            if not container.streams.video:
                kinds = sorted({stream.type for stream in container.streams}) or ["no"]
                raise UploadError(filename, f"there is no video stream (found {', '.join(kinds)} stream(s)).")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            time_base = float(stream.time_base) if stream.time_base else None
            count, first, end = 0, None, None
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                count += 1
                if packet.pts is not None and time_base:
                    first = packet.pts if first is None else min(first, packet.pts)
                    stop = packet.pts + (packet.duration or 0)
                    end = stop if end is None else max(end, stop)
                span = (end - first) * time_base if first is not None else (count / fps if fps else None)
                if count > limits.max_frames:
                    raise UploadError(filename, f"the video has more than {limits.max_frames} frames (counted, "
                                                f"whatever its header says); the limit is {limits.max_frames}.")
                if span is not None and span > limits.max_seconds:
                    raise UploadError(filename, f"the video is at least {span:.1f} s long (measured from its "
                                                f"timestamps); the limit is {limits.max_seconds:g} s.")
            if count == 0:
                raise UploadError(filename, "the video stream holds no frames.")
            duration = (end - first) * time_base if first is not None and end > first else (
                count / fps if fps else None)
            if duration is None:
                raise UploadError(filename, "the video has neither timestamps nor a frame rate, so its length "
                                            "cannot be measured.")
            container.seek(0)
            stream.codec_context.thread_count = 1
            frame = next(container.decode(stream), None)
            if frame is None:
                raise UploadError(filename, "no frame of the video decodes.")
            width, height, codec = frame.width, frame.height, stream.codec_context.name
    except UploadError:
        raise
    except Exception as error:  # corrupt metadata makes PyAV raise more than FFmpegError (UnicodeDecodeError, ...)
        raise UploadError(filename, f"this is not a readable video: {_av_failure(error)}.") from error
    if not (limits.min_side <= min(width, height) and max(width, height) <= limits.max_side):
        raise UploadError(filename, f"the resolution {width}x{height} is outside the allowed "
                                    f"{limits.min_side}..{limits.max_side} px per side.")
    if count * width * height > limits.max_decode_pixels:
        raise UploadError(filename, f"decoding {count} frames of {width}x{height} is more work than this demo "
                                    f"allows per upload ({limits.max_decode_pixels / 1e6:g} Mpx); upload a "
                                    "shorter or smaller video.")
    return {"frames": count, "duration": duration, "fps": fps, "width": width, "height": height, "codec": codec}


def decode_upload(path: str, video_processor, limits: UploadLimits, filename: str
                  ) -> tuple[np.ndarray, list[float | None]]:
    """
    The frames `video_processor` samples from an uploaded video, (T, H, W, 3) uint8, and their times in seconds.

    Hand-written rather than the processor's own file decoding on purpose: one forward pass whose work is metered
    frame by frame and stops at `limits.max_decode_pixels`, whatever the file claims. The frame indices are the
    processor's own sampling of the measured frame count, and PyAV decodes the same pixels, so the encoding equals
    `video_processor([path])` for any well-formed file.
    """
    info = measure_video(path, limits, filename)
    indices = [int(i) for i in video_processor.sample_frames(VideoMetadata(total_num_frames=info["frames"],
                                                                           fps=info["fps"]))]
    wanted, last, frames, spent = set(indices), max(indices), {}, 0
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # one core per upload: searches of other visitors keep theirs
            for number, frame in enumerate(container.decode(stream)):
                spent += frame.width * frame.height
                if spent > limits.max_decode_pixels or max(frame.width, frame.height) > limits.max_side:
                    raise UploadError(filename, f"decoding it exceeds the {limits.max_decode_pixels / 1e6:g} Mpx "
                                                "this demo allows per upload (its frames are larger or more "
                                                "numerous than its header and packets say).")
                if number in wanted:
                    frames[number] = frame.to_ndarray(format="rgb24")
                if number >= last:
                    break
    except UploadError:
        raise
    except Exception as error:
        raise UploadError(filename, f"this is not a readable video: {_av_failure(error)}.") from error
    if not wanted <= frames.keys():
        raise UploadError(filename, f"only {len(frames)} of the frames it lists decode; the file is damaged.")
    sizes = {frames[i].shape for i in wanted}
    if len(sizes) > 1:
        raise UploadError(filename, f"its frames change size ({sorted(sizes)}); re-encode it at one resolution.")
    fps = info["fps"]
    return np.stack([frames[i] for i in indices]), [round(i / fps, 3) if fps else None for i in indices]


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def attention_overlay(attention: PatchAttention, highlight: int = 6, min_width: int = 240) -> np.ndarray:
    """
    The sampled frames side by side with T2V2T's patch attention drawn over them: each patch tinted orange in
    proportion to how much of the query it took in (1 - bypass) and darkened the more it bypassed, on a scale
    stretched from the least to the most text taken in over the whole clip (the scale is printed below); the
    `highlight` patches that took in the most text are outlined, with the word each attended to most.
    """
    frames = attention.frames
    count, height, width, _ = frames.shape
    scale = max(1, int(np.ceil(min_width / width)))
    side = attention.intake.shape[1]
    low, high = float(attention.intake.min()), float(attention.intake.max())
    relative = (attention.intake - low) / max(high - low, 1e-6)  # (T, S, S) in [0, 1]
    gap, header, footer = 8, 22, 40
    canvas = Image.new("RGB", (count * width * scale + (count - 1) * gap, header + height * scale + footer), "white")
    draw = ImageDraw.Draw(canvas)
    small, label_font = _font(12), _font(13)
    top = attention.top_patches(highlight)
    orange = np.array([255, 140, 0], dtype=np.float32)
    for index in range(count):
        # Per-pixel weight from the patch grid (nearest: every pixel of a patch gets its patch's value).
        weight = relative[index].repeat(int(np.ceil(height / side)), 0)[:height]
        weight = weight.repeat(int(np.ceil(width / side)), 1)[:, :width][..., None]
        frame = frames[index].astype(np.float32) * (0.35 + 0.65 * weight)
        frame = frame * (1 - 0.5 * weight) + orange * 0.5 * weight
        tile = Image.fromarray(frame.clip(0, 255).astype(np.uint8)).resize((width * scale, height * scale),
                                                                            Image.NEAREST)
        left = index * (width * scale + gap)
        canvas.paste(tile, (left, header))
        time_label = attention.frame_times[index]
        draw.text((left + 2, 3), f"frame {index + 1}" + ("" if time_label is None else f" ({time_label:.2f} s)"),
                  fill="black", font=label_font)
    patch_w, patch_h = width * scale / side, height * scale / side
    for frame_index, row, column in top:
        left = frame_index * (width * scale + gap) + column * patch_w
        upper = header + row * patch_h
        draw.rectangle([left, upper, left + patch_w - 1, upper + patch_h - 1], outline=(255, 255, 0), width=2)
        words = attention.top_words(frame_index, row, column, 2)
        if words:
            text = " ".join(word for word, _ in words)
            box = draw.textbbox((left + 3, upper + 3), text, font=small)
            draw.rectangle([box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1], fill=(0, 0, 0))
            draw.text((left + 3, upper + 3), text, fill=(255, 255, 0), font=small)
    what = "took in words (1 - bypass)" if attention.has_bypass else "attention (no bypass in this model)"
    draw.text((2, header + height * scale + 4),
              f"orange = patch {what}: brightest {high:.2f}, darkest {low:.2f}. Outlined: the {len(top)} patches "
              "that took in the most, with their top word.", fill="black", font=small)
    return np.asarray(canvas)


class LoadedCheckpoint:
    """A checkpoint folder loaded for search: model, processor, test metrics and the encoded gallery."""

    def __init__(self, name: str, path: Path, device: str = "cpu"):
        self.name = name
        self.path = path
        # float32 whatever the stored dtype: the folder keeps float16 weights to stay small; CPU runs float32 best.
        self.model = AutoModel.from_pretrained(str(path), trust_remote_code=True, dtype=torch.float32).to(device)
        self.model.eval()
        self.processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=True)
        self.device = torch.device(device)
        self.metrics = self._read_metrics()
        self.gallery: list[EncodedVideo] = []
        self._uploads: OrderedDict[str, EncodedVideo] = OrderedDict()  # sha256 -> encoding, LRU
        self._uploads_lock = threading.Lock()  # searches and uploads of different sessions run in parallel threads
        self._encoding_class = None

    def _read_metrics(self) -> dict:
        path = self.path / METRICS_FILE
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            logger.warning("Ignoring %s: not valid JSON (%s).", path, error)
            return {}

    @property
    def config(self):
        return self.model.config

    @property
    def can_rerank(self) -> bool:
        return bool(getattr(self.config, "has_joint_encoder", False))

    @property
    def has_bypass(self) -> bool:
        return self.can_rerank and bool(getattr(self.config, "has_t2v_fusion", False)) and bool(
            getattr(self.config, "use_bypass", False))

    @property
    def recommended_rank_by(self) -> str:
        """Rerank by default only where the checkpoint's own test results say reranking helps (a from-scratch
        matching head can be undertrained, and then reranking lowers R@1)."""
        reranked, embedding = self.metrics.get("test_reranked_t2v_R1"), self.metrics.get("test_embedding_t2v_R1")
        if self.can_rerank and reranked is not None and embedding is not None and reranked > embedding:
            return "rerank"
        return "embedding"

    def vocabulary_check(self, cleaned: str) -> list[str]:
        """Words of the query the tokenizer maps to [UNK] (the synthetic checkpoints know ~115 words)."""
        tokenizer = self.processor.tokenizer
        unk = tokenizer.unk_token
        return [word for word in cleaned.split() if unk is not None and unk in tokenizer.tokenize(word)]

    # ----- encoding -------------------------------------------------------------------------------------------
    def _model_frames(self, pixels: torch.Tensor) -> np.ndarray:
        """Undo the processor's normalisation: (T, C, H, W) model input -> (T, H, W, 3) uint8 as the model saw it."""
        video_processor = self.processor.video_processor
        mean = torch.tensor(video_processor.image_mean).view(1, -1, 1, 1)
        std = torch.tensor(video_processor.image_std).view(1, -1, 1, 1)
        pixels = pixels.float() * std + mean if video_processor.do_normalize else pixels.float()
        if video_processor.do_rescale:
            pixels = pixels / video_processor.rescale_factor
        return pixels.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def _load_pixels(self, path: str) -> tuple[torch.Tensor, list[float | None]]:
        batch = self.processor.video_processor([path], return_metadata=True, return_tensors="pt")
        metadata = batch["video_metadata"][0]
        fps = metadata.fps
        times = [round(index / fps, 3) if fps else None for index in (metadata.frames_indices or [])]
        return batch["pixel_values_videos"], times

    @torch.no_grad()
    def encode_records(self, records: Sequence[VideoRecord], batch_size: int = 8,
                       progress: ProgressFn | None = None) -> list[EncodedVideo]:
        """Decode and encode `records`; a file that does not decode raises `ValueError` naming it."""
        encoded = []
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            pixels, times = [], []
            for record in chunk:
                try:
                    video, frame_times = self._load_pixels(record.path)
                except Exception as error:  # any failure to read a gallery file (whatever the processor raises)
                    raise ValueError(f"{record.path}: the video does not decode ({type(error).__name__}: {error}).") \
                        from error
                pixels.append(video)
                times.append(frame_times)
            encoded += self._encode_pixels(chunk, torch.cat(pixels), times)
            if progress is not None:
                done = min(start + batch_size, len(records))
                progress(done / len(records), f"Indexing videos with {self.name}: {done}/{len(records)}")
        return encoded

    @torch.no_grad()
    def encode_frames(self, record: VideoRecord, frames: np.ndarray, frame_times: list[float | None]) -> EncodedVideo:
        """Encode a video given as its sampled frames (T, H, W, 3) uint8, already `num_frames` of them."""
        pixels = self.processor.video_processor([frames], return_tensors="pt")["pixel_values_videos"]
        return self._encode_pixels([record], pixels, [frame_times])[0]

    def _encode_pixels(self, chunk, pixels, times) -> list[EncodedVideo]:
        encoded = []
        # Checkpoints whose code has the exact joint-encoder cache (T2V2T with <= 1 text->video layer) keep each
        # video's per-video rerank work, so a query's rerank costs only its caption-dependent part.
        joint_cache = bool(getattr(self.model, "supports_joint_cache", False))
        encoding = self.model.encode_video(pixels.to(self.device), **({"joint_cache": True} if joint_cache else {}))
        self._encoding_class = type(encoding)
        for position, record in enumerate(chunk):
            tokens = encoding.video_tokens
            encoded.append(EncodedVideo(
                record=record,
                frames=self._model_frames(pixels[position]),
                frame_times=times[position],
                video_embed=encoding.video_embeds[position].float().cpu(),
                frame_embeds=encoding.frame_embeds[position].float().cpu(),
                video_tokens=None if tokens is None else tokens[position].float().cpu().clone(),
                joint_cache={name: encoding[name][position].cpu().clone() for name in JOINT_CACHE_FIELDS
                             if encoding.get(name) is not None} if joint_cache else None,
            ))
        return encoded

    def index_gallery(self, records: Sequence[VideoRecord], progress: ProgressFn | None = None) -> None:
        self.gallery = self.encode_records(records, progress=progress)
        logger.info("Indexed %d gallery videos with checkpoint %s.", len(self.gallery), self.name)

    def encode_upload(self, record: VideoRecord, cache_size: int, limits: "UploadLimits | None" = None) -> EncodedVideo:
        """The encoding of an uploaded video, cached by content hash (uploads come back after a checkpoint switch).
        Decoded within `limits` (see `decode_upload`); raises `UploadError` for a file that cannot be used."""
        with self._uploads_lock:
            cached = self._uploads.get(record.sha256)
            if cached is not None:
                self._uploads.move_to_end(record.sha256)
        if cached is not None:
            # The hit may be another session's upload of the same file: answer with this session's record.
            return EncodedVideo(record, cached.frames, cached.frame_times, cached.video_embed, cached.frame_embeds,
                                cached.video_tokens, cached.joint_cache)
        name = record.video_id.removeprefix("upload:")
        if not os.path.isfile(record.path):
            raise UploadError(name, "this upload has expired and was deleted; add it again.")
        frames, times = decode_upload(record.path, self.processor.video_processor, limits or UploadLimits(), name)
        try:
            encoded = self.encode_frames(record, frames, times)
        except Exception as error:  # the model's processor refusing the frames: say why, without paths
            raise UploadError(name, f"the model cannot use its frames ({type(error).__name__}: {error}).") from error
        with self._uploads_lock:
            self._uploads[record.sha256] = encoded
            while len(self._uploads) > cache_size:
                self._uploads.popitem(last=False)
        return encoded

    # ----- search ---------------------------------------------------------------------------------------------
    def encode_text(self, cleaned: str):
        batch = self.processor(text=[cleaned], return_tensors="pt")
        inputs = {key: batch[key].to(self.device) for key in ("input_ids", "attention_mask") if key in batch}
        return self.model.encode_text(**inputs)

    def _video_encoding(self, videos: Sequence[EncodedVideo]):
        # video_embeds too: the rerank score may add the embedding similarity (config.rerank_score="vtm+vtc").
        fields = {"video_tokens": torch.stack([video.video_tokens for video in videos]),
                  "video_embeds": torch.stack([video.video_embed for video in videos])}
        if all(video.joint_cache for video in videos):
            fields.update({name: torch.stack([video.joint_cache[name] for video in videos])
                           for name in videos[0].joint_cache})
        return self._encoding_class(**{name: value.to(self.device) for name, value in fields.items()})

    @torch.no_grad()
    def rerank_scores(self, text_encoding, videos: Sequence[EncodedVideo], batch_size: int = 32) -> list[float]:
        """The joint encoder's rerank score of the query against each video (`score_pairs(...).scores`)."""
        scores = []
        for start in range(0, len(videos), batch_size):
            chunk = videos[start : start + batch_size]
            texts = text_encoding.select(torch.zeros(len(chunk), dtype=torch.long, device=self.device))
            scores += self.model.score_pairs(text_encoding=texts, video_encoding=self._video_encoding(chunk)) \
                .scores.float().cpu().tolist()
        return scores

    @torch.no_grad()
    def frame_relevance(self, text_encoding, video: EncodedVideo) -> FrameRelevance:
        cosine = (video.frame_embeds @ text_encoding.text_embeds[0].float().cpu()).tolist()
        bypass = None
        if self.has_bypass:
            pairs = self.model.score_pairs(text_encoding=text_encoding.select(torch.zeros(1, dtype=torch.long)),
                                           video_encoding=self._video_encoding([video]), output_bypass_probs=True)
            if pairs.bypass_probs:
                # (layers, 1, heads, T*L) -> mean over layers, heads and each frame's L tokens -> (T,)
                probs = torch.stack(pairs.bypass_probs).float().mean(dim=(0, 1, 2))
                bypass = probs.view(len(cosine), -1).mean(dim=1).tolist()
        return FrameRelevance(video.record.video_id, video.frames, video.frame_times, cosine, bypass)

    def forget_uploads(self, sha256s: set[str]) -> None:
        """Drop the cached encodings of these uploads (their files were deleted)."""
        with self._uploads_lock:
            for sha in sha256s:
                self._uploads.pop(sha, None)

    @property
    def has_patch_attention(self) -> bool:
        """T2V2T checkpoints whose code can return the text→video attention (older copies of the code cannot)."""
        return self.can_rerank and bool(getattr(self.config, "has_t2v_fusion", False)) and hasattr(
            self.model, "text_to_video_attentions")

    @torch.no_grad()
    def patch_attention(self, text_encoding, cleaned: str, video: EncodedVideo) -> PatchAttention:
        """Per patch of each sampled frame of `video`: how much of the query it took in, and from which words."""
        layers = self.model.text_to_video_attentions(
            text_encoding.select(torch.zeros(1, dtype=torch.long, device=self.device)), self._video_encoding([video]))
        word_probs = torch.stack([probs for probs, _ in layers]).float().mean(dim=(0, 2))[0].cpu()  # (T*L, N)
        num_frames = len(video.frames)
        per_frame = word_probs.shape[0] // num_frames
        side = int(round((per_frame - 1) ** 0.5))
        if side * side + 1 != per_frame:
            raise ValueError(f"{self.name}: {per_frame} video tokens per frame is not [CLS] + a square patch grid.")
        word_probs = word_probs.view(num_frames, per_frame, -1)[:, 1:]  # drop each frame's [CLS] token
        has_bypass = layers[0][1] is not None
        if has_bypass:
            bypass = torch.stack([probs for _, probs in layers]).float().mean(dim=(0, 2))[0].cpu()
            intake = 1.0 - bypass.view(num_frames, per_frame)[:, 1:]
        else:
            intake = word_probs.sum(-1)
        tokenizer = self.processor.tokenizer
        ids = self.processor(text=[cleaned], return_tensors="pt")["input_ids"][0].tolist()
        keep = [i for i, token_id in enumerate(ids) if token_id not in set(tokenizer.all_special_ids)]
        shape = (num_frames, side, side)
        return PatchAttention(
            video.record.video_id, video.frames, video.frame_times, tokenizer.convert_ids_to_tokens([ids[i] for i in keep]),
            intake.reshape(shape).numpy(), word_probs[..., keep].reshape(*shape, len(keep)).numpy(), has_bypass)


class DemoEngine:
    """
    Everything the app calls: the checkpoints under `checkpoints_dir` (one loaded at a time per name, the
    `max_loaded` most recent kept), the gallery in `gallery_dir`, upload validation and search.

    Args:
        checkpoints_dir: folders that each hold a Hub-ready checkpoint (`config.json`, weights, code, processor).
        gallery_dir: `gallery.json` and its videos.
        upload_dir: where validated uploads are copied (a folder per session, files named by content hash); default
            a new temporary folder. Never served to the web.
        media_dir: where the images the app shows are written (content-addressed PNG files); default a new
            temporary folder.
        limits (`UploadLimits`): what an upload may be.
        device: torch device for the model ("cpu" on a free Space).
        rerank_k: embedding hits rescored by the joint encoder per query.
    """

    def __init__(self, checkpoints_dir=DEFAULT_CHECKPOINTS_DIR, gallery_dir=DEFAULT_GALLERY_DIR, upload_dir=None,
                 limits: UploadLimits | None = None, device: str = "cpu", rerank_k: int = 16, max_loaded: int = 2,
                 upload_cache_size: int = 256, media_dir=None):
        self.checkpoints_dir = Path(checkpoints_dir)
        self.gallery_dir = Path(gallery_dir)
        self.upload_dir = Path(upload_dir) if upload_dir else Path(tempfile.mkdtemp(prefix="t2v2t_demo_uploads_"))
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self.media_dir = Path(media_dir) if media_dir else Path(tempfile.mkdtemp(prefix="t2v2t_demo_media_"))
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.limits = limits or UploadLimits()
        self.device = device
        self.rerank_k = rerank_k
        self.max_loaded = max_loaded
        self.upload_cache_size = upload_cache_size
        self.gallery = load_gallery(self.gallery_dir)
        self._loaded: OrderedDict[str, LoadedCheckpoint] = OrderedDict()
        self._lock = threading.Lock()
        if not self.checkpoint_names():
            raise FileNotFoundError(f"No checkpoint folder (with config.json) under {self.checkpoints_dir}: run "
                                    "spaces_demo/prepare_assets.py first.")

    # ----- checkpoints ----------------------------------------------------------------------------------------
    def checkpoint_names(self) -> list[str]:
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(p.name for p in self.checkpoints_dir.iterdir() if (p / "config.json").is_file())

    @property
    def default_checkpoint(self) -> str:
        """`$T2V2T_DEMO_CHECKPOINT` if set, else the first folder by name."""
        names = self.checkpoint_names()
        wanted = os.environ.get("T2V2T_DEMO_CHECKPOINT")
        if wanted:
            if wanted not in names:
                raise ValueError(f"T2V2T_DEMO_CHECKPOINT={wanted!r} is not a folder of {self.checkpoints_dir} "
                                 f"(found {names}).")
            return wanted
        return names[0]

    def checkpoint(self, name: str | None = None, progress: ProgressFn | None = None) -> LoadedCheckpoint:
        """The checkpoint `name` loaded with its gallery indexed (loaded and indexed on first use, then cached)."""
        name = name or self.default_checkpoint
        with self._lock:  # two sessions switching at once must not load the same checkpoint twice
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            names = self.checkpoint_names()
            if name not in names:
                raise ValueError(f"Unknown checkpoint {name!r}: the checkpoints are {names}.")
            if progress is not None:
                progress(0.0, f"Loading checkpoint {name}")
            loaded = LoadedCheckpoint(name, self.checkpoints_dir / name, self.device)
            loaded.index_gallery(self.gallery, progress=progress)
            self._loaded[name] = loaded
            while len(self._loaded) > self.max_loaded:
                dropped, _ = self._loaded.popitem(last=False)
                logger.info("Unloaded checkpoint %s (keeping the %d most recent).", dropped, self.max_loaded)
            return loaded

    # ----- uploads ----------------------------------------------------------------------------------------------
    def validate_upload(self, path: str | os.PathLike | None, filename: str | None = None) -> dict:
        """
        Check an uploaded file before decoding it for the model. `filename` is the name the user gave (default:
        the file's own name). Returns what was measured (see `measure_video`) plus its size in `bytes`.

        Raises:
            UploadError: naming the file and the problem: no file, a type not in `limits.extensions`, empty or
                larger than `limits.max_bytes`, or anything `measure_video` refuses.
        """
        limits = self.limits
        if path is None or not os.path.isfile(path):
            raise UploadError(filename or "upload", "no file was received.")
        path = os.fspath(path)
        filename = filename or os.path.basename(path)
        extension = os.path.splitext(filename)[1].lower()
        if extension not in limits.extensions:
            shown = f"'{extension}'" if extension else "no extension"
            raise UploadError(filename, f"unsupported file type ({shown}); upload a video: "
                                        f"{', '.join(limits.extensions)}.")
        size = os.path.getsize(path)
        if size == 0:
            raise UploadError(filename, "the file is empty (0 bytes).")
        if size > limits.max_bytes:
            raise UploadError(filename, f"the file is {size / 2**20:.1f} MB; the limit is "
                                        f"{limits.max_bytes / 2**20:.1f} MB.")
        return {**measure_video(path, limits, filename), "bytes": size}

    def session_dir(self, session: str) -> Path:
        """The folder of one session's uploads (named by a hash of the session id, never by the id itself)."""
        return self.upload_dir / hashlib.sha256(session.encode()).hexdigest()[:24]

    def encode_upload(self, record: VideoRecord, checkpoint: str | None = None) -> EncodedVideo:
        """`record` encoded by `checkpoint` (cached), within `limits`."""
        loaded = self.checkpoint(checkpoint)
        if os.path.isfile(record.path):
            os.utime(record.path)  # in use: keep it past the retention sweep
        return loaded.encode_upload(record, self.upload_cache_size, self.limits)

    def discard_uploads(self, records: Sequence[VideoRecord] | None) -> int:
        """Delete a session's stored uploads and their cached encodings (the app calls this when the session ends
        or its state expires). Returns how many files were deleted."""
        deleted, folders = 0, set()
        for record in records or ():
            if record.source != "upload":
                continue
            path = Path(record.path)
            folders.add(path.parent)
            if path.is_file() and self.upload_dir in path.parents:
                path.unlink()
                deleted += 1
        self._forget({record.sha256 for record in records or () if record.sha256})
        for folder in folders:
            if folder.is_dir() and self.upload_dir in folder.parents and not any(folder.iterdir()):
                folder.rmdir()
        if deleted:
            logger.info("Deleted %d upload(s) of an ended session.", deleted)
        return deleted

    def _forget(self, sha256s: set[str]) -> None:
        with self._lock:
            loaded = list(self._loaded.values())
        for checkpoint in loaded:
            checkpoint.forget_uploads(sha256s)

    def purge_expired(self, now: float | None = None) -> int:
        """Delete stored uploads and session images not used for `limits.retention_seconds` (a backstop for
        sessions that never signalled their end). Returns how many files were deleted."""
        cutoff = (time.time() if now is None else now) - self.limits.retention_seconds
        deleted, shas = 0, set()
        for root in (self.upload_dir, self.media_dir / "session"):
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                try:
                    if path.is_file() and path.stat().st_mtime < cutoff:
                        if root == self.upload_dir:
                            shas.add(path.stem)
                        path.unlink()
                        deleted += 1
                    elif path.is_dir() and not any(path.iterdir()):
                        path.rmdir()
                except FileNotFoundError:  # a session's own cleanup got there first
                    continue
        if shas:  # stored files are named by the first 16 hex digits of their SHA-256
            with self._lock:
                loaded = list(self._loaded.values())
            for checkpoint in loaded:
                with checkpoint._uploads_lock:
                    gone = {sha for sha in checkpoint._uploads if sha[:16] in shas}
                checkpoint.forget_uploads(gone)
        if deleted:
            logger.info("Retention: deleted %d file(s) unused for %g s.", deleted, self.limits.retention_seconds)
        return deleted

    def media_file(self, image: np.ndarray, kind: str = "gallery") -> str:
        """
        `image` as a PNG file named by its content, written once (atomically) and never rewritten, for the app to
        return instead of an array: Gradio would rewrite an array's cache file in place on every request, and a
        concurrent request serving it then reads a file that changes length under it. `kind` "session" puts
        query- or upload-specific images where the retention sweep deletes them.
        """
        data = png_bytes(np.ascontiguousarray(image))
        folder = self.media_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
        if path.exists():
            os.utime(path)  # used again: keep it past the retention sweep
            return str(path)
        handle, staging = tempfile.mkstemp(dir=folder, prefix=".staging-", suffix=".png")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(staging, path)
        return str(path)

    def _upload_id(self, filename: str, wanted: str | None, taken: set[str]) -> str:
        base = _UNSAFE_ID.sub("_", (wanted or "").strip() or Path(filename).stem).strip("._-")[:48] or "upload"
        video_id, number = f"upload:{base}", 2
        while video_id in taken:
            video_id, number = f"upload:{base}-{number}", number + 1
        return video_id

    def add_upload(self, path, checkpoint: str | None = None, uploads: Sequence[VideoRecord] = (),
                   filename: str | None = None, video_id: str | None = None,
                   progress: ProgressFn | None = None, session: str = "local") -> tuple[VideoRecord, bool]:
        """
        Validate an uploaded file, copy it into the folder of `session` under `upload_dir` and encode it with
        `checkpoint`, so that searches given it in `uploads` find it. `uploads` are the session's earlier uploads;
        `video_id` a name for it.

        Returns:
            `(record, added)`: `added` is False when the same file is already among `uploads` (then the earlier
            record is returned).

        Raises:
            UploadError: see `validate_upload`; also too many uploads, or the model's decoder failing on the file.
        """
        filename = filename or (os.path.basename(path) if path else "upload")
        info = self.validate_upload(path, filename)
        sha = _sha256(os.fspath(path))
        for record in uploads:
            if record.sha256 == sha:
                return record, False
        if len(uploads) >= self.limits.max_per_session:
            raise UploadError(filename, f"this session already added {len(uploads)} videos, the most allowed; "
                                        "reload the page to start over.")
        if progress is not None:
            progress(0.1, f"Checked {filename}: {info['duration']:.1f} s, {info['width']}x{info['height']}")
        folder = self.session_dir(session)
        folder.mkdir(parents=True, exist_ok=True)
        stored = folder / f"{sha[:16]}{os.path.splitext(filename)[1].lower()}"
        if not stored.exists():
            shutil.copyfile(path, stored)  # the session's own copy, deleted with the session (or by retention)
        taken = {record.video_id for record in self.gallery} | {record.video_id for record in uploads}
        record = VideoRecord(self._upload_id(filename, video_id, taken), str(stored), source="upload", sha256=sha)
        loaded = self.checkpoint(checkpoint)
        if progress is not None:
            progress(0.5, f"Encoding {filename} with {loaded.name}")
        try:
            loaded.encode_upload(record, self.upload_cache_size, self.limits)
        except UploadError as error:
            stored.unlink(missing_ok=True)
            raise UploadError(filename, error.reason) from error
        logger.info("Added upload %s (%s, %.1f s) for checkpoint %s.", record.video_id, filename, info["duration"],
                    loaded.name)
        return record, True

    # ----- search ---------------------------------------------------------------------------------------------
    def search(self, query: str, checkpoint: str | None = None, k: int = 5, rank_by: str | None = None,
               uploads: Sequence[VideoRecord] = ()) -> SearchResult:
        """
        The `k` best videos (gallery plus `uploads`) for `query`, best first, ranked by `rank_by`: "embedding"
        (stage 1 only) or "rerank" (the top `rerank_k` embedding hits rescored by the joint encoder); default: what
        the checkpoint's test results favour. Every hit carries both scores when the model can rerank. The best
        hit also gets its per-frame relevance.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError("The query is empty: type what the video should show, e.g. 'a red star spins'.")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        loaded = self.checkpoint(checkpoint)
        rank_by = rank_by or loaded.recommended_rank_by
        if rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}.")
        if rank_by == "rerank" and not loaded.can_rerank:
            raise ValueError(f"Checkpoint {loaded.name} is a dual encoder (fusion_mode="
                             f"{getattr(loaded.config, 'fusion_mode', None)!r}): it cannot rerank.")
        cleaned = clean_query(query)
        if not cleaned:
            raise ValueError(f"The query {query!r} has no words left after removing punctuation.")
        videos = list(loaded.gallery) + [self.encode_upload(record, loaded.name) for record in uploads]
        with torch.no_grad():
            text = loaded.encode_text(cleaned)
            embedding = torch.stack([video.video_embed for video in videos]) @ text.text_embeds[0].float().cpu()
        order = torch.argsort(embedding, descending=True, stable=True).tolist()
        candidates = order[: max(k, self.rerank_k)] if loaded.can_rerank else order[:k]
        rerank = dict(zip(candidates, loaded.rerank_scores(text, [videos[i] for i in candidates]))) \
            if loaded.can_rerank else {}
        if rank_by == "rerank":
            # Stable: equal match logits keep their embedding order.
            candidates = sorted(candidates, key=lambda row: -rerank[row])
        hits = [Hit(rank, videos[row].record, float(embedding[row]), rerank.get(row), frame_grid(videos[row].frames))
                for rank, row in enumerate(candidates[:k], start=1)]
        relevance = loaded.frame_relevance(text, videos[candidates[0]]) if hits else None
        attention = loaded.patch_attention(text, cleaned, videos[candidates[0]]) \
            if hits and loaded.has_patch_attention else None
        return SearchResult(query, cleaned, rank_by, hits, relevance, loaded.vocabulary_check(cleaned), len(videos),
                            attention)


__all__ = ["DemoEngine", "LoadedCheckpoint", "UploadError", "UploadLimits", "VideoRecord", "SearchResult", "Hit",
           "FrameRelevance", "PatchAttention", "measure_video", "decode_upload", "attention_overlay", "without_paths", "clean_query", "load_gallery", "frame_grid", "VIDEO_EXTENSIONS", "RANK_BY"]
