"""Text-to-video search over your own videos: index them once, search by text, optionally rerank, save and load.

Two stages, as VindLU and T2V2T evaluate retrieval:

1. **Embedding search**: every video is encoded once with `model.get_video_features` into an `EmbeddingIndex`
   (`search_index.py`: exact torch search, or faiss for millions of videos); a query's text embedding is compared
   with all of them by inner product (the model's VTC similarity) and the top candidates are kept.
2. **Reranking** (optional, models with a joint encoder): the top `rerank_k` candidates are scored again by the
   joint encoder (`model.score_pairs`, the VTM logit) and reordered. This needs the video *tokens*, which are far
   too large to keep for every indexed video (T x L x D floats each: ~2.4 MB for BEiT-B with 4 frames, so 2.4 TB
   for 1M videos), so candidates are decoded and encoded again at search time; a small LRU cache keeps the tokens
   of recently reranked videos, since popular videos come back across queries. For galleries that fit on disk,
   `joint_cache=True` stores each video's joint-encoder cache (float16, `joint_cache.py`) at indexing instead, so
   reranking decodes nothing.

Any model with `get_text_features(input_ids, attention_mask)` and `get_video_features(pixel_values_videos)` works
for stage 1 (T2V2T, the dual encoder, CRET, X-Pool); stage 2 needs `encode_text`, `encode_video`, `score_pairs` and
`config.has_joint_encoder`, or, for a model whose own score is pairwise but has no joint encoder (X-Pool:
text-conditioned pooling), `retrieval_similarity(text_encoding, video_encoding)`. X-Pool's stage-1 embeddings are
text-independent (mean of its frame features), so its exact ranking is the reranked one (`rerank_k` = the number of
indexed videos ranks them all exactly).

Example:

```python
>>> from modeling_t2v2t import T2V2TModel, T2V2TProcessor
>>> from modeling_t2v2t.retrieval.retriever import VideoRetriever
>>> model = T2V2TModel.from_pretrained("org/t2v2t-msrvtt")
>>> processor = T2V2TProcessor.from_pretrained("org/t2v2t-msrvtt")
>>> retriever = VideoRetriever(model, processor)  # index_backend="faiss" for millions of videos
>>> retriever.index_videos(["clips/a.mp4", "clips/b.mp4", "clips/c.mp4"])  # returns how many were added
>>> for hit in retriever.search("a dog catches a frisbee", k=2, rerank=True)[0]:
...     print(hit.video_id, hit.score, hit.embedding_score)
>>> retriever.save("my_index")
>>> retriever = VideoRetriever.load("my_index", model, processor)
```
"""

import hashlib
import json
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from ..modeling_t2v2t import T2V2TVideoEncoding
from .index import EmbeddingIndex, checked_field, create_index, load_index, read_json_object
from .joint_cache import JointCacheStore
from .video_files import VIDEO_EXTENSIONS, find_videos

logger = logging.get_logger(__name__)

RETRIEVER_CONFIG_NAME = "retriever.json"
VIDEOS_NAME = "videos.json"
INDEX_FOLDER = "index"
JOINT_CACHE_FOLDER = "joint_cache"
_FORMAT_VERSION = 1
# What "this video could not be read" looks like (missing file, corrupt container, decoder failure). Anything else,
# e.g. a TypeError from a misconfigured processor, is a bug and propagates instead of skipping every video.
DECODE_ERRORS = (OSError, ValueError, RuntimeError, EOFError)
# Encoding fields scoring does not read: not worth keeping in the rerank cache (each is as large as the tokens).
_NOT_CACHED = ("vision_last_hidden_state", "hidden_states", "attentions")
# Config entries that change with the library version or the save location, not with the model.
_VOLATILE_CONFIG_KEYS = frozenset({"transformers_version", "architectures", "dtype", "torch_dtype", "auto_map",
                                   "name_or_path", "use_cache", "return_dict", "output_hidden_states",
                                   "output_attentions"})
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class RetrievalResult:
    """
    One hit of `VideoRetriever.search`.

    Args:
        video_id (`str`): the id given at indexing.
        path (`str` or `None`): the video file.
        score (`float`): what the hits are ranked by: the joint-encoder match logit when reranked, otherwise the
            embedding inner product.
        embedding_score (`float`, *optional*): the stage-1 inner product, set when the hit was reranked.
        index (`int`): row of the video in the retriever's index.
    """

    video_id: str
    path: str | None
    score: float
    embedding_score: float | None = None
    index: int = -1


class SkippedVideo(NamedTuple):
    """A video `index_videos` left out: its path and why (the decoding error)."""

    path: str
    reason: str


def config_fingerprint(config) -> str:
    """A short hash of a model config, ignoring library versions and save locations (to spot a different model)."""

    def strip(value):
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items()
                    if key not in _VOLATILE_CONFIG_KEYS and not str(key).startswith("_")}
        if isinstance(value, (list, tuple)):
            return [strip(item) for item in value]
        return value

    text = json.dumps(strip(config.to_dict()), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _as_embeddings(output) -> torch.Tensor:
    # get_*_features return a tensor in this package; some transformers models return an output with pooler_output.
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    return pooled if pooled is not None else output[0]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def _check_queries(texts) -> list[str]:
    queries = [texts] if isinstance(texts, str) else list(texts)
    if not queries:
        raise ValueError("search() got no query: pass a string or a non-empty list of strings.")
    for number, query in enumerate(queries):
        if not isinstance(query, str):
            raise ValueError(f"Query {number} must be a string, got {type(query).__name__}.")
        if not query.strip():
            raise ValueError(f"Query {number} is empty or whitespace: {query!r}.")
    return queries


class VideoRetriever:
    r"""
    Index videos with a retrieval model and search them by text (embedding top-k, then optional joint-encoder
    reranking); save and load the index with its metadata.

    Args:
        model: a `T2V2TModel` or any model with `get_text_features` / `get_video_features` (put it on the device
            you want first; it is switched to eval mode).
        processor: its processor (`processor(text=[...])` -> `input_ids`/`attention_mask`;
            `processor(videos=[path])` -> `pixel_values_videos`).
        index_backend (`str`, defaults to `"exact"`): `"exact"` (torch, exact) or `"faiss"` (approximate, for
            millions of videos; `pip install faiss-cpu`).
        index_params (`dict`, *optional*): arguments of the index class, e.g.
            `{"factory": "PQ128x4fs,RFlat", "k_factor": 20}` for faiss (see `search_index.FaissIndex`).
        rerank_cache_size (`int`, defaults to 128): videos whose joint-encoder tokens are kept between reranks
            (least recently used evicted first; 0 disables the cache).
        show_progress (`bool`, defaults to `True`): tqdm progress bars for indexing and reranking.
        joint_cache (`bool`, defaults to `False`): at indexing, also store each video's joint-encoder cache
            (`model.build_joint_cache`: fusion keys/values, text→video queries) on disk (`joint_cache_dtype`), saved
            with the index, so reranking reads candidates' caches instead of decoding and encoding them again. Costs
            `(2 * fusion layers + 1) * frames * tokens * width` numbers per video (25 MB in float16 for
            BEiT-B/BERT-B, 12 frames). A loaded retriever uses a saved store automatically.
        joint_cache_dtype (`str`, defaults to `"float16"`): `"float16"` or `"float32"` storage.

    Attributes:
        skipped (`list[SkippedVideo]`): every video `index_videos` could not decode, with the reason.
    """

    def __init__(
        self,
        model,
        processor,
        index_backend: str = "exact",
        index_params: dict | None = None,
        rerank_cache_size: int = 128,
        show_progress: bool = True,
        joint_cache: bool = False,
        joint_cache_dtype: str = "float16",
    ):
        for method in ("get_text_features", "get_video_features"):
            if not callable(getattr(model, method, None)):
                raise ValueError(f"{type(model).__name__} has no {method}(); VideoRetriever needs an embedding model.")
        if isinstance(rerank_cache_size, bool) or not isinstance(rerank_cache_size, int) or rerank_cache_size < 0:
            raise ValueError(f"rerank_cache_size must be a non-negative integer, got {rerank_cache_size!r}.")
        self.model = model.eval()  # dropout would make the embeddings random
        self.processor = processor
        self.index_backend = index_backend
        self.index_params = dict(index_params or {})
        self.index: EmbeddingIndex = create_index(index_backend, **self.index_params)
        self.rerank_cache_size = rerank_cache_size
        self.show_progress = show_progress
        self.skipped: list[SkippedVideo] = []
        self._video_ids: list[str] = []
        self._paths: list[str | None] = []
        self._id_to_row: dict[str, int] = {}
        self._cache: OrderedDict[int, dict] = OrderedDict()  # row -> one video's encoding fields
        self._encoding_class = None
        if joint_cache and not getattr(model, "supports_joint_cache", False):
            raise ValueError(f"joint_cache=True needs a model with build_joint_cache() (a T2V2TModel with a joint "
                             f"encoder and num_t2v_layers <= 1); {type(model).__name__} has none.")
        self._joint_store = JointCacheStore(joint_cache_dtype) if joint_cache else None
        self._pending_joint = None  # the last batch's joint caches, stored once their index rows are known

    # ----- properties -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._video_ids)

    @property
    def video_ids(self) -> list[str]:
        return list(self._video_ids)

    @property
    def paths(self) -> list[str | None]:
        return list(self._paths)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def _reranks_by_similarity(self) -> bool:
        """Reranking with the model's pairwise `retrieval_similarity` (X-Pool) rather than a joint encoder."""
        return (not getattr(self.model.config, "has_joint_encoder", False)
                and callable(getattr(self.model, "retrieval_similarity", None)))

    @property
    def can_rerank(self) -> bool:
        """Whether the model can rescore candidates: a joint encoder (`score_pairs`), or `retrieval_similarity`."""
        if self._reranks_by_similarity:
            scorer = "retrieval_similarity"
        elif getattr(self.model.config, "has_joint_encoder", False):
            scorer = "score_pairs"
        else:
            return False
        return all(callable(getattr(self.model, name, None)) for name in ("encode_text", "encode_video", scorer))

    def _floating_dtype(self) -> torch.dtype:
        return next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)

    # ----- indexing -------------------------------------------------------------------------------------------
    def _resolve_videos(self, videos, video_ids) -> tuple[list, list[str]]:
        """File paths and ids from a list of paths or a `datasets.Dataset` with a "video" column."""
        if hasattr(videos, "column_names") and hasattr(videos, "features"):  # a datasets.Dataset (duck-typed)
            if "video" not in videos.column_names:
                raise ValueError(f"The dataset needs a 'video' column of file paths; it has {videos.column_names}.")
            feature = videos.features["video"]
            if type(feature).__name__ == "Video":  # a datasets Video feature: read its paths, not decoded frames
                videos = videos.cast_column("video", type(feature)(decode=False))
            if "video_id" in videos.column_names:
                if video_ids is not None:
                    raise ValueError("Pass video_ids or a dataset with a 'video_id' column, not both.")
                video_ids = list(videos["video_id"])
            items = list(videos["video"])
            paths = [item.get("path") if isinstance(item, dict) else item for item in items]
        elif isinstance(videos, (str, os.PathLike)) and os.path.isdir(videos):
            paths = find_videos(videos).paths
            if not paths:
                raise ValueError(f"No video files found in {os.fspath(videos)} (searched recursively for "
                                 f"{', '.join(VIDEO_EXTENSIONS)}).")
        elif isinstance(videos, (str, os.PathLike)):
            if not os.path.exists(videos):
                raise FileNotFoundError(f"{os.fspath(videos)} is neither a video file nor a folder of videos.")
            paths = [videos]
        else:
            paths = list(videos)
        for number, path in enumerate(paths):
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"videos[{number}] must be a file path, got {type(path).__name__}.")
        paths = [os.fspath(path) for path in paths]
        if video_ids is None:
            video_ids = paths
        video_ids = [str(video_id) for video_id in video_ids]
        if len(video_ids) != len(paths):
            raise ValueError(f"Got {len(paths)} videos but {len(video_ids)} video_ids.")
        seen = set()
        for video_id in video_ids:
            if video_id in self._id_to_row or video_id in seen:
                raise ValueError(f"Video id {video_id!r} is already indexed or given twice; ids must be unique.")
            seen.add(video_id)
        return paths, video_ids

    def _load_video(self, path: str):
        """`(pixel_values_videos (1, T, C, H, W), None)`, or `(None, error)` when the file cannot be decoded (the
        processor raises `VideoDecodeError` for any unreadable file, `FileNotFoundError` for a missing one)."""
        try:
            return self.processor(videos=[path], return_tensors="pt")["pixel_values_videos"], None
        except DECODE_ERRORS as err:
            return None, err

    def _decoded_batches(self, paths: list[str], batch_size: int, num_workers: int):
        """Yield `(start, [(pixels, error), ...])` per batch; with workers, the next batch decodes meanwhile."""
        starts = range(0, len(paths), batch_size)
        if num_workers == 0:
            for start in starts:
                yield start, [self._load_video(path) for path in paths[start : start + batch_size]]
            return
        with ThreadPoolExecutor(num_workers) as pool:  # PyAV decodes outside the GIL
            pending = None
            for start in starts:
                futures = [pool.submit(self._load_video, path) for path in paths[start : start + batch_size]]
                if pending is not None:
                    yield pending[0], [future.result() for future in pending[1]]
                pending = (start, futures)
            if pending is not None:
                yield pending[0], [future.result() for future in pending[1]]

    @torch.no_grad()
    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(device=self.device, dtype=self._floating_dtype())
        if self._joint_store is not None:
            self._pending_joint = self.model.encode_video(pixels, joint_cache=True)
            return self._pending_joint.video_embeds.float().cpu()
        return _as_embeddings(self.model.get_video_features(pixel_values_videos=pixels)).float().cpu()

    def _store_joint_cache(self, first_row: int) -> None:
        """Write the joint caches of the batch `_encode_pixels` just encoded, now at rows `first_row...`."""
        if self._joint_store is not None and self._pending_joint is not None:
            count = len(self._pending_joint.video_embeds)
            self._joint_store.append(list(range(first_row, first_row + count)), self._pending_joint)
        self._pending_joint = None

    def index_videos(self, videos, video_ids=None, batch_size: int = 8, num_workers: int = 0,
                     skip_bad: bool = True) -> int:
        """
        Decode, encode and add videos to the index; can be called again to add more.

        Args:
            videos: a folder (searched recursively for video files by extension, see `video_files.find_videos`;
                `ValueError` if it holds none), a list of video file paths, or a `datasets.Dataset` with a "video"
                column of paths (and a "video_id" column, used as ids when present), e.g. a `processing.builders`
                dataset.
            video_ids (*optional*): one unique id per video; default: the path (or the dataset's "video_id").
            batch_size (`int`, defaults to 8): videos encoded together.
            num_workers (`int`, defaults to 0): threads decoding the next batch while this one is encoded.
            skip_bad (`bool`, defaults to `True`): leave out a video that cannot be decoded (logged, recorded in
                `self.skipped` as `(path, reason)`, counted in the closing log line); `False` raises the first
                such error (`VideoDecodeError` naming the file, or `FileNotFoundError`).

        Returns:
            `int`: the number of videos added.
        """
        _check_positive_int("batch_size", batch_size)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}.")
        paths, video_ids = self._resolve_videos(videos, video_ids)
        if not paths:
            logger.warning("index_videos() got no videos.")
            return 0
        added, skipped_before = 0, len(self.skipped)
        progress = tqdm(total=len(paths), desc="Indexing videos", unit="video", disable=not self.show_progress)
        for start, loaded in self._decoded_batches(paths, batch_size, num_workers):
            rows, pixels = [], []
            for offset, (pixel_values, error) in enumerate(loaded):
                if error is not None:
                    if not skip_bad:
                        raise error
                    reason = f"{type(error).__name__}: {error}"
                    logger.warning("Skipping video %r: %s", paths[start + offset], reason)
                    self.skipped.append(SkippedVideo(paths[start + offset], reason))
                    continue
                rows.append(start + offset)
                pixels.append(pixel_values)
            if rows:
                embeddings = self._encode_pixels(torch.cat(pixels))
                self.add_embeddings(embeddings, [video_ids[row] for row in rows], [paths[row] for row in rows])
                self._store_joint_cache(len(self) - len(rows))
                added += len(rows)
            progress.update(len(loaded))
        progress.close()
        skipped = len(self.skipped) - skipped_before
        if skipped:
            logger.warning("Indexed %d of %d videos; %d could not be decoded (see retriever.skipped).",
                           added, len(paths), skipped)
        return added

    def add_embeddings(self, embeddings, video_ids, paths=None) -> None:
        """
        Add precomputed video embeddings (N, E) (from `model.get_video_features`) with their ids and file paths,
        e.g. computed shard by shard in several processes (`dataset.shard(...)`). Reranking needs the paths.
        """
        video_ids = [str(video_id) for video_id in video_ids]
        paths = [None] * len(video_ids) if paths is None else [None if p is None else os.fspath(p) for p in paths]
        if not (len(embeddings) == len(video_ids) == len(paths)):
            raise ValueError(f"Got {len(embeddings)} embeddings, {len(video_ids)} video_ids and {len(paths)} paths.")
        for video_id in video_ids:
            if video_id in self._id_to_row:
                raise ValueError(f"Video id {video_id!r} is already indexed; ids must be unique.")
        self.index.add(embeddings)  # first: it validates the shape before any metadata changes
        for video_id, path in zip(video_ids, paths):
            self._id_to_row[video_id] = len(self._video_ids)
            self._video_ids.append(video_id)
            self._paths.append(path)

    # ----- search ---------------------------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> dict:
        batch = self.processor(text=texts, return_tensors="pt")
        return {key: batch[key].to(self.device) for key in _TEXT_INPUTS if key in batch}

    @torch.no_grad()
    def encode_texts(self, texts) -> torch.Tensor:
        """(Q, E) float32 text embeddings, the queries of stage 1."""
        return _as_embeddings(self.model.get_text_features(**self._tokenize(_check_queries(texts)))).float().cpu()

    def _check_rerank(self) -> None:
        if not self.can_rerank:
            fusion = getattr(self.model.config, "fusion_mode", None)
            what = f"fusion_mode={fusion!r}, a dual encoder" if fusion is not None else "no joint encoder"
            raise ValueError(
                f"rerank=True needs a joint encoder (score_pairs) or a pairwise retrieval_similarity, but this "
                f"{type(self.model).__name__} has {what}; search with rerank=False (embedding similarity only)."
            )

    def search(
        self, texts, k: int = 10, rerank: bool = False, rerank_k: int | None = None, batch_size: int = 32
    ) -> list[list[RetrievalResult]]:
        """
        The `k` best videos for each query.

        Args:
            texts (`str` or `list[str]`): queries; an empty or whitespace-only query raises `ValueError`.
            k (`int`, defaults to 10): results per query (fewer if fewer videos are indexed).
            rerank (`bool`, defaults to `False`): rescore the top `rerank_k` embedding hits with the joint encoder
                (X-Pool: with its text-conditioned `retrieval_similarity`) and return the best `k` of them (other
                models: `ValueError`).
            rerank_k (`int`, *optional*): candidates to rerank per query, at least `k`; default `max(k, 32)`. Each
                uncached candidate is decoded and encoded again, so this sets the reranking cost.
            batch_size (`int`, defaults to 32): queries encoded together, and pairs scored together when reranking.

        Returns:
            One list of `RetrievalResult` per query (also for a single string), best first.
        """
        queries = _check_queries(texts)
        _check_positive_int("k", k)
        _check_positive_int("batch_size", batch_size)
        if len(self) == 0:
            raise ValueError("The retriever has no videos: call index_videos() first.")
        if rerank:
            self._check_rerank()
            rerank_k = max(k, 32) if rerank_k is None else _check_positive_int("rerank_k", rerank_k)
            if rerank_k < k:
                raise ValueError(f"rerank_k ({rerank_k}) must be at least k ({k}): the results come from the reranked "
                                 "candidates.")
        elif rerank_k is not None:
            raise ValueError("rerank_k is only used with rerank=True.")

        results = []
        progress = tqdm(total=len(queries), desc="Reranking", unit="query",
                        disable=not (rerank and self.show_progress))
        for start in range(0, len(queries), batch_size):
            chunk = queries[start : start + batch_size]
            with torch.no_grad():
                if rerank:
                    text_encoding = self.model.encode_text(**self._tokenize(chunk))
                    text_embeds = text_encoding.text_embeds.float().cpu()
                else:
                    text_embeds = _as_embeddings(self.model.get_text_features(**self._tokenize(chunk))).float().cpu()
            scores, rows = self.index.search(text_embeds, rerank_k if rerank else k)
            for number in range(len(chunk)):
                hits = [(row, score) for row, score in zip(rows[number].tolist(), scores[number].tolist()) if row >= 0]
                if rerank:
                    results.append(self._rerank(text_encoding, number, hits, k, batch_size))
                    progress.update(1)
                else:
                    results.append([self._result(row, score) for row, score in hits])
        progress.close()
        return results

    def _result(self, row: int, score: float, embedding_score: float | None = None) -> RetrievalResult:
        return RetrievalResult(video_id=self._video_ids[row], path=self._paths[row], score=float(score),
                               embedding_score=embedding_score, index=row)

    # ----- reranking ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _candidate_encodings(self, rows: list[int], batch_size: int) -> dict[int, dict]:
        """Joint-encoder video encodings of `rows`, from the LRU cache or decoded and encoded now."""
        found, missing = {}, []
        for row in rows:
            if row in self._cache:
                self._cache.move_to_end(row)  # most recently used
                found[row] = self._cache[row]
            else:
                missing.append(row)
        for start in range(0, len(missing), batch_size):
            batch, pixels = [], []
            for row in missing[start : start + batch_size]:
                if self._paths[row] is None:
                    logger.warning("Cannot rerank video %r: it was indexed without a file path.", self._video_ids[row])
                    continue
                pixel_values, reason = self._load_video(self._paths[row])
                if reason is not None:
                    logger.warning("Cannot rerank video %r (indexed earlier): %s", self._paths[row], reason)
                    continue
                batch.append(row)
                pixels.append(pixel_values)
            if not batch:
                continue
            pixels = torch.cat(pixels).to(device=self.device, dtype=self._floating_dtype())
            encoding = self.model.encode_video(pixels)
            self._encoding_class = type(encoding)
            for position, row in enumerate(batch):
                # clone(): a row view would keep the whole batch's tensors alive in the cache.
                fields = {key: value[position].clone() for key, value in encoding.items()
                          if key not in _NOT_CACHED and isinstance(value, torch.Tensor)}
                found[row] = fields
                if self.rerank_cache_size:
                    self._cache[row] = fields
                    if len(self._cache) > self.rerank_cache_size:
                        self._cache.popitem(last=False)  # least recently used
        return found

    @torch.no_grad()
    def _rerank_from_joint_store(self, text_encoding, number: int, rows: list[int], batch_size: int) -> dict:
        """Joint-encoder scores {row: score} of query `number` against indexed videos with a stored joint cache:
        nothing is decoded or encoded, each candidate's cache is read from the store."""
        scores = {}
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            fields = self._joint_store.get(chunk, self._floating_dtype(), self.device)
            positions = torch.arange(len(chunk), device=self.device)
            texts = text_encoding.select(torch.full((len(chunk),), number, dtype=torch.long, device=self.device))
            pair_scores = self.model.score_pairs(text_encoding=texts, video_encoding=T2V2TVideoEncoding(**fields),
                                                 video_index=positions, use_joint_cache=True).scores
            scores.update(zip(chunk, pair_scores.float().cpu().tolist()))
        return scores

    @torch.no_grad()
    def _rerank(self, text_encoding, number: int, hits: list, k: int, batch_size: int) -> list[RetrievalResult]:
        """Score query `number` of `text_encoding` against its stage-1 `hits` with the joint encoder (or the
        model's `retrieval_similarity`); candidates with a stored joint cache are scored from it."""
        stored = {}
        if self._joint_store is not None and not self._reranks_by_similarity:
            stored = self._rerank_from_joint_store(text_encoding, number,
                                                   [row for row, _ in hits if row in self._joint_store], batch_size)
        encodings = self._candidate_encodings([row for row, _ in hits if row not in stored], batch_size)
        reranked = {}  # row -> (match score, embedding score)
        decoded = [(row, score) for row, score in hits if row in encodings]
        for start in range(0, len(decoded), batch_size):
            chunk = decoded[start : start + batch_size]
            videos = self._encoding_class(**{key: torch.stack([encodings[row][key] for row, _ in chunk])
                                             for key in encodings[chunk[0][0]]})
            if self._reranks_by_similarity:
                query = text_encoding.select(torch.tensor([number], device=self.device))
                pair_scores = self.model.retrieval_similarity(query, videos)[0].float().cpu()
            else:
                texts = text_encoding.select(torch.full((len(chunk),), number, dtype=torch.long, device=self.device))
                pair_scores = self.model.score_pairs(text_encoding=texts, video_encoding=videos).scores.float().cpu()
            reranked.update((row, score) for score, (row, _) in zip(pair_scores.tolist(), chunk))
        reranked.update(stored)
        reranked = [(reranked[row], row, embedding_score) for row, embedding_score in hits if row in reranked]
        # Stable sort: equal match scores keep their embedding order.
        reranked.sort(key=lambda item: -item[0])
        return [self._result(row, score, embedding_score) for score, row, embedding_score in reranked[:k]]

    def clear_cache(self) -> None:
        """Drop the cached joint-encoder encodings (e.g. to free memory)."""
        self._cache.clear()

    # ----- save / load ----------------------------------------------------------------------------------------
    def _model_description(self) -> dict:
        config = self.model.config
        return {
            "class": type(self.model).__name__,
            "model_type": getattr(config, "model_type", None),
            "name_or_path": getattr(self.model, "name_or_path", None) or getattr(config, "_name_or_path", None),
            "config_hash": config_fingerprint(config),
        }

    def _num_frames(self) -> int | None:
        video_processor = getattr(self.processor, "video_processor", self.processor)
        return getattr(video_processor, "num_frames", None)

    def model_embed_dim(self) -> int:
        """Size of the model's embeddings (from its config, or by encoding one word)."""
        # retrieval_embed_dim first: CRET's search embeddings are wider than its embed_dim.
        for name in ("retrieval_embed_dim", "embed_dim", "projection_dim"):
            value = getattr(self.model.config, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return self.encode_texts(["a"]).shape[-1]

    def save(self, directory) -> None:
        """
        Write `directory/retriever.json` (model name and config hash, embed dim, frames per video, skipped
        videos), `videos.json` (ids and paths, in index order) and `index/` (the `EmbeddingIndex`: safetensors or
        faiss + `index.json`).
        """
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        self.index.save(os.path.join(directory, INDEX_FOLDER))
        with open(os.path.join(directory, VIDEOS_NAME), "w") as file:
            json.dump({"video_ids": self._video_ids, "paths": self._paths}, file)
        config = {
            "format_version": _FORMAT_VERSION,
            "num_videos": len(self),
            "embed_dim": self.index.dim,
            "index_backend": self.index.backend,
            "index_params": self.index.params(),
            "num_frames": self._num_frames(),
            "model": self._model_description(),
            "skipped": [list(item) for item in self.skipped],
            "joint_cache": self._joint_store is not None and len(self._joint_store) > 0,
        }
        if config["joint_cache"]:
            self._joint_store.save(os.path.join(directory, JOINT_CACHE_FOLDER))
        with open(os.path.join(directory, RETRIEVER_CONFIG_NAME), "w") as file:
            json.dump(config, file, indent=2)
        logger.info("Saved a retriever over %d videos to %s.", len(self), directory)

    @classmethod
    def load(cls, directory, model, processor, **kwargs) -> "VideoRetriever":
        """
        Load a retriever written by `save`, to search with `model` and `processor`.

        Raises `ValueError` when the model's embedding size differs from the index's. A different model config
        (hash) or frames per video only logs a warning: the same architecture with other weights cannot be told
        apart, and embeddings from another model are meaningless, so load with the model that built the index.
        `kwargs` go to the constructor (e.g. `rerank_cache_size`).
        """
        directory = os.fspath(directory)
        path = os.path.join(directory, RETRIEVER_CONFIG_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No saved retriever in {directory}: {RETRIEVER_CONFIG_NAME} is missing.")
        config, videos = _read_saved_config(path), _read_saved_videos(os.path.join(directory, VIDEOS_NAME))
        retriever = cls(model, processor, index_backend=config["index_backend"], **kwargs)
        saved = config["model"]
        model_dim = retriever.model_embed_dim()
        if config["embed_dim"] is not None and config["embed_dim"] != model_dim:
            raise ValueError(
                f"The index in {directory} holds {config['embed_dim']}-d embeddings (built with "
                f"{saved['class']} {saved['name_or_path']!r}), but this {type(model).__name__} "
                f"({retriever._model_description()['name_or_path']!r}) produces {model_dim}-d embeddings."
            )
        if saved["config_hash"] != config_fingerprint(model.config):
            logger.warning("The index in %s was built with a different model config (%s %r); its embeddings may not "
                           "match this model's.", directory, saved["class"], saved["name_or_path"])
        if config["num_frames"] is not None and config["num_frames"] != retriever._num_frames():
            logger.warning("The index in %s was built with %s frames per video, this processor samples %s.",
                           directory, config["num_frames"], retriever._num_frames())
        retriever.index = load_index(os.path.join(directory, INDEX_FOLDER))
        retriever.index_params = {key: value for key, value in config["index_params"].items() if key != "dim"}
        if not (len(retriever.index) == len(videos["video_ids"]) == len(videos["paths"]) == config["num_videos"]):
            raise ValueError(f"{directory} is inconsistent: {len(retriever.index)} embeddings, "
                             f"{len(videos['video_ids'])} ids, {len(videos['paths'])} paths.")
        retriever._video_ids = list(videos["video_ids"])
        retriever._paths = list(videos["paths"])
        retriever._id_to_row = {video_id: row for row, video_id in enumerate(retriever._video_ids)}
        retriever.skipped = [SkippedVideo(*item) for item in config.get("skipped", [])]
        if config.get("joint_cache"):
            if not getattr(model, "supports_joint_cache", False):
                raise ValueError(f"{directory} holds joint-encoder caches, but {type(model).__name__} cannot use them "
                                 "(no build_joint_cache).")
            if retriever._joint_store is not None:
                retriever._joint_store.close()
            retriever._joint_store = JointCacheStore.load(os.path.join(directory, JOINT_CACHE_FOLDER))
        return retriever


def _read_saved_config(path: str) -> dict:
    """`retriever.json`, every field checked (a `ValueError` names the file and the field)."""
    config = read_json_object(path)
    checked_field(config, "num_videos", (int,), path)
    checked_field(config, "embed_dim", (int, type(None)), path)
    checked_field(config, "index_backend", (str,), path)
    checked_field(config, "index_params", (dict,), path)
    checked_field(config, "num_frames", (int, type(None)), path)
    model = checked_field(config, "model", (dict,), path)
    for key in ("class", "config_hash"):
        checked_field(model, key, (str,), f"{path} (field 'model')")
    checked_field(model, "name_or_path", (str, type(None)), f"{path} (field 'model')")
    skipped = checked_field(config, "skipped", (list,), path, optional=True) or []
    for number, item in enumerate(skipped):
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item)):
            raise ValueError(f"{path}: skipped[{number}] must be a [path, reason] pair of strings, got "
                             f"{json.dumps(item)[:80]}.")
    return config


def _read_saved_videos(path: str) -> dict:
    """`videos.json`: `video_ids` (unique strings) and `paths` (strings or null), one each per indexed video."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the saved retriever is incomplete.")
    videos = read_json_object(path)
    video_ids = checked_field(videos, "video_ids", (list,), path)
    paths = checked_field(videos, "paths", (list,), path)
    for field, values, types in (("video_ids", video_ids, (str,)), ("paths", paths, (str, type(None)))):
        wrong = next((number for number, value in enumerate(values) if not isinstance(value, types)), None)
        if wrong is not None:
            raise ValueError(f"{path}: {field}[{wrong}] must be a string{' or null' if field == 'paths' else ''}, "
                             f"got {json.dumps(values[wrong])[:80]}.")
    if len(video_ids) != len(paths):
        raise ValueError(f"{path}: 'video_ids' has {len(video_ids)} entries but 'paths' has {len(paths)}.")
    seen, duplicates = set(), []
    for video_id in video_ids:
        if video_id in seen:
            duplicates.append(video_id)
        seen.add(video_id)
    if duplicates:
        raise ValueError(f"{path}: 'video_ids' must be unique; repeated: {sorted(set(duplicates))[:5]}.")
    return videos


__all__ = ["VideoRetriever", "RetrievalResult", "SkippedVideo", "config_fingerprint", "DECODE_ERRORS"]
