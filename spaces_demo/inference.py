"""Inference behind the Space: load a T2V2T checkpoint folder, index a gallery of videos once, answer text queries.

Self-contained on purpose: a checkpoint folder under `checkpoints/` is a Hub-ready folder with the model's code
inside, loaded with `AutoModel`/`AutoProcessor.from_pretrained(folder, trust_remote_code=True)`, so the Space needs
transformers, torch, PyAV and gradio but not the `t2v2t` package. The index is kept in memory, in full: for a
gallery of tens of videos the whole `encode_video` output (mean and per-frame embeddings, and the video tokens the
joint encoder attends to) is small, so search, reranking and the per-frame relevance plot need no re-decoding. For
thousands of videos or more use `modeling_t2v2t.retrieval.retriever.VideoRetriever` (same scores, faiss, disk-backed index).

Scores, as the model defines them:

- embedding score: `text_embeds @ video_embeds`, the VTC similarity = the mean over the sampled frames of the
  cosine between the text embedding and each frame embedding (stage 1 of retrieval);
- rerank score: the joint encoder's score `score_pairs(...).scores` (stage 2): by default the VTM log-odds plus the
  VTC logit (`config.rerank_score="vtm+vtc"`), or VindLU's VTM match logit alone (`"vtm"`);
- per-frame relevance: the cosine between the text embedding and each frame embedding (their mean is the
  embedding score), and, for T2V2T's Bypass cross-attention, the share of attention each frame's tokens put on the
  bypass slot ("keep me unchanged") instead of the words.

Uploaded videos are validated (extension, size, duration, resolution, decodable) and kept per browser session by
the app: they are encoded here and cached by content hash, but only the session that uploaded a video searches it.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
from transformers import AutoModel, AutoProcessor

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DEFAULT_CHECKPOINTS_DIR = HERE / "checkpoints"
DEFAULT_GALLERY_DIR = HERE / "gallery"
GALLERY_MANIFEST = "gallery.json"
METRICS_FILE = "test_results.json"
# Containers a browser upload is likely to be and FFmpeg (bundled with PyAV) reads.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")
RANK_BY = ("embedding", "rerank")
# What decoding failures look like coming out of the processor (PyAV / PIL errors are wrapped in these).
_DECODE_ERRORS = (OSError, ValueError, RuntimeError, EOFError, av.FFmpegError)
_DROPPED = re.compile(r"[,.'!?\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")

ProgressFn = Callable[[float, str], None]


class UploadError(ValueError):
    """An uploaded video that cannot be added; the message names the file and the problem."""

    def __init__(self, filename: str, reason: str):
        self.filename = filename
        self.reason = reason
        super().__init__(f"{filename}: {reason}")


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
    min_side: int = 16
    max_side: int = 4096
    max_per_session: int = 10
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS


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


@dataclass
class EncodedVideo:
    """One video as the model sees it: `frames` (T, H, W, 3) uint8, the resized frames the model got, their
    `frame_times` in seconds (`None` if unknown), `video_embed` (E,), `frame_embeds` (T, E) normalised, and
    `video_tokens` (T*L, D) for the joint encoder (`None` for a dual encoder)."""

    record: VideoRecord
    frames: np.ndarray
    frame_times: list[float | None]
    video_embed: torch.Tensor
    frame_embeds: torch.Tensor
    video_tokens: torch.Tensor | None


@dataclass
class FrameRelevance:
    """Per sampled frame of one video: `cosine` between the query and the frame embedding (their mean is the
    embedding score) and `bypass_share`, the mean probability that the frame's tokens took the bypass in the
    text→video layers (`None` when the model has no bypass)."""

    video_id: str
    frames: np.ndarray
    frame_times: list[float | None]
    cosine: list[float]
    bypass_share: list[float] | None


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
                except _DECODE_ERRORS as error:
                    raise ValueError(f"{record.path}: the video does not decode ({type(error).__name__}: {error}).") \
                        from error
                pixels.append(video)
                times.append(frame_times)
            pixels = torch.cat(pixels)
            encoding = self.model.encode_video(pixels.to(self.device))
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
                ))
            if progress is not None:
                done = min(start + batch_size, len(records))
                progress(done / len(records), f"Indexing videos with {self.name}: {done}/{len(records)}")
        return encoded

    def index_gallery(self, records: Sequence[VideoRecord], progress: ProgressFn | None = None) -> None:
        self.gallery = self.encode_records(records, progress=progress)
        logger.info("Indexed %d gallery videos with checkpoint %s.", len(self.gallery), self.name)

    def encode_upload(self, record: VideoRecord, cache_size: int) -> EncodedVideo:
        """The encoding of an uploaded video, cached by content hash (uploads come back after a checkpoint switch)."""
        with self._uploads_lock:
            cached = self._uploads.get(record.sha256)
            if cached is not None:
                self._uploads.move_to_end(record.sha256)
        if cached is not None:
            # The hit may be another session's upload of the same file: answer with this session's record.
            return EncodedVideo(record, cached.frames, cached.frame_times, cached.video_embed, cached.frame_embeds,
                                cached.video_tokens)
        encoded = self.encode_records([record])[0]
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
        return self._encoding_class(video_tokens=torch.stack([video.video_tokens for video in videos]).to(self.device),
                                    video_embeds=torch.stack([video.video_embed for video in videos]).to(self.device))

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


class DemoEngine:
    """
    Everything the app calls: the checkpoints under `checkpoints_dir` (one loaded at a time per name, the
    `max_loaded` most recent kept), the gallery in `gallery_dir`, upload validation and search.

    Args:
        checkpoints_dir: folders that each hold a Hub-ready checkpoint (`config.json`, weights, code, processor).
        gallery_dir: `gallery.json` and its videos.
        upload_dir: where validated uploads are copied (named by content hash); default a new temporary folder.
        limits (`UploadLimits`): what an upload may be.
        device: torch device for the model ("cpu" on a free Space).
        rerank_k: embedding hits rescored by the joint encoder per query.
    """

    def __init__(self, checkpoints_dir=DEFAULT_CHECKPOINTS_DIR, gallery_dir=DEFAULT_GALLERY_DIR, upload_dir=None,
                 limits: UploadLimits | None = None, device: str = "cpu", rerank_k: int = 16, max_loaded: int = 2,
                 upload_cache_size: int = 256):
        self.checkpoints_dir = Path(checkpoints_dir)
        self.gallery_dir = Path(gallery_dir)
        self.upload_dir = Path(upload_dir) if upload_dir else Path(tempfile.mkdtemp(prefix="t2v2t_demo_uploads_"))
        self.upload_dir.mkdir(parents=True, exist_ok=True)
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
                raise ValueError(f"Unknown checkpoint {name!r}: the folders of {self.checkpoints_dir} are {names}.")
            if progress is not None:
                progress(0.0, f"Loading checkpoint {name}")
            loaded = LoadedCheckpoint(name, self.checkpoints_dir / name, self.device)
            loaded.index_gallery(self.gallery, progress=progress)
            self._loaded[name] = loaded
            while len(self._loaded) > self.max_loaded:
                dropped, _ = self._loaded.popitem(last=False)
                logger.info("Unloaded checkpoint %s (keeping the %d most recent).", dropped, self.max_loaded)
            return loaded

    # ----- uploads --------------------------------------------------------------------------------------------
    def validate_upload(self, path: str | os.PathLike | None, filename: str | None = None) -> dict:
        """
        Check an uploaded file before decoding it for the model. `filename` is the name the user gave (default:
        the file's own name). Returns what the header says (duration, frames, size, codec).

        Raises:
            UploadError: naming the file and the problem: no file, a type not in `limits.extensions`, empty or
                larger than `limits.max_bytes`, not readable by FFmpeg, no video stream, longer than
                `limits.max_seconds`, a side outside `limits.min_side..max_side`, or no frame decodes.
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
        try:
            with av.open(path) as container:
                if not container.streams.video:
                    kinds = sorted({stream.type for stream in container.streams}) or ["no"]
                    raise UploadError(filename, f"there is no video stream (found {', '.join(kinds)} stream(s)).")
                stream = container.streams.video[0]
                fps = float(stream.average_rate) if stream.average_rate else None
                if stream.duration is not None and stream.time_base:
                    duration = float(stream.duration * stream.time_base)
                elif container.duration is not None:
                    duration = container.duration / av.time_base
                else:
                    duration = stream.frames / fps if stream.frames and fps else None
                if duration is None:
                    raise UploadError(filename, "the container gives no duration, so its length cannot be checked.")
                if duration > limits.max_seconds:
                    raise UploadError(filename, f"the video is {duration:.1f} s long; the limit is "
                                                f"{limits.max_seconds:g} s.")
                width, height = stream.codec_context.width, stream.codec_context.height
                if not (limits.min_side <= min(width, height) and max(width, height) <= limits.max_side):
                    raise UploadError(filename, f"the resolution {width}x{height} is outside the allowed "
                                                f"{limits.min_side}..{limits.max_side} px per side.")
                stream.codec_context.thread_count = 1
                if next(container.decode(stream), None) is None:
                    raise UploadError(filename, "no frame of the video decodes.")
                codec = stream.codec_context.name
        # As the model's processor does (VideoDecodeError): corrupt metadata fails PyAV with UnicodeDecodeError, a
        # codec FFmpeg cannot decode leaves no codec_context (AttributeError).
        except (av.FFmpegError, UnicodeDecodeError, AttributeError) as error:
            raise UploadError(filename, f"this is not a readable video: corrupt data or an unsupported format "
                                        f"({type(error).__name__}: {error}).") from error
        return {"duration": duration, "fps": fps, "width": width, "height": height, "codec": codec, "bytes": size}

    def _upload_id(self, filename: str, wanted: str | None, taken: set[str]) -> str:
        base = _UNSAFE_ID.sub("_", (wanted or "").strip() or Path(filename).stem).strip("._-")[:48] or "upload"
        video_id, number = f"upload:{base}", 2
        while video_id in taken:
            video_id, number = f"upload:{base}-{number}", number + 1
        return video_id

    def add_upload(self, path, checkpoint: str | None = None, uploads: Sequence[VideoRecord] = (),
                   filename: str | None = None, video_id: str | None = None,
                   progress: ProgressFn | None = None) -> tuple[VideoRecord, bool]:
        """
        Validate an uploaded file, copy it into `upload_dir` and encode it with `checkpoint`, so that searches
        given it in `uploads` find it. `uploads` are the session's earlier uploads; `video_id` a name for it.

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
        stored = self.upload_dir / f"{sha[:16]}{os.path.splitext(filename)[1].lower()}"
        if not stored.exists():
            shutil.copyfile(path, stored)  # gradio may clean its own temporary copy; ours lives as long as the app
        taken = {record.video_id for record in self.gallery} | {record.video_id for record in uploads}
        record = VideoRecord(self._upload_id(filename, video_id, taken), str(stored), source="upload", sha256=sha)
        loaded = self.checkpoint(checkpoint)
        if progress is not None:
            progress(0.5, f"Encoding {filename} with {loaded.name}")
        try:
            loaded.encode_upload(record, self.upload_cache_size)
        except ValueError as error:
            raise UploadError(filename, f"the model's video decoder cannot read it ({error}).") from error
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
        videos = list(loaded.gallery) + [loaded.encode_upload(record, self.upload_cache_size) for record in uploads]
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
        return SearchResult(query, cleaned, rank_by, hits, relevance, loaded.vocabulary_check(cleaned), len(videos))


__all__ = ["DemoEngine", "LoadedCheckpoint", "UploadError", "UploadLimits", "VideoRecord", "SearchResult", "Hit",
           "FrameRelevance", "clean_query", "load_gallery", "frame_grid", "VIDEO_EXTENSIONS", "RANK_BY"]
