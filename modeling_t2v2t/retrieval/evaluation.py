"""Two-stage retrieval evaluation (VindLU's protocol): embedding similarity for every caption-video pair, then the
top-k candidates of each query rescored by the joint encoder, in both directions.

Memory stays bounded: captions are encoded once and their states kept (small); each gallery video is encoded once,
its embedding kept and its joint-encoder tokens written to a `VideoTokenStore` (in memory up to a budget, else a
temporary memory-mapped file); candidate pairs are scored grouped by video, so each video's tokens are read once
and the joint encoder's per-video work (`model.build_joint_cache`: fusion-layer keys/values, T2V2T's text→video
queries and bypass keys) is done once per video and shared by all its candidate captions; only one video's cache
is held at a time. T2V2T's caption-conditioned change of the video tokens enters as an exact low-rank term (see
`T2V2TTextTransformer.fuse_cached`), so caching loses nothing.

Models whose similarity is not a dot product of embeddings (X-Pool pools a video's frames for each caption) define
`retrieval_similarity(text_encoding, video_encoding) -> (texts, videos)`; the embedding stage then keeps each video's
whole encoding (e.g. X-Pool's per-frame keys and values) and asks the model for the similarity instead of
`text_embeds @ video_embeds.T`. Models without a joint encoder (`config.has_joint_encoder` False: the dual encoder,
X-Pool, CRET) stop after that stage.
"""

import math
import tempfile
import time
from dataclasses import dataclass, field
from collections.abc import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from ..modeling_t2v2t import T2V2TTextEncoding, T2V2TVideoEncoding
from .families import (FamilyLabels, caption_text_scores, family_gain_intervals, family_pairs, family_win_rates,
                       top1_breakdown)
from .metrics import T2V_CONVENTION, V2T_CONVENTIONS, ranks_text_to_video, ranks_video_to_text, retrieval_metrics

logger = logging.get_logger(__name__)


@dataclass
class TwoStageResult:
    """
    `metrics`: `{"embedding": {...}, "reranked": {...}}` (see `retrieval_metrics`; no "reranked" without a joint
    encoder). `similarity`: (texts, videos) embedding similarity. `t2v_scores`/`v2t_scores`: (texts, videos) scores
    after reranking each direction's top-k (candidates carry the joint-encoder score, the others stay below them in
    embedding order). `num_pairs_scored`: joint-encoder evaluations. `timings`: seconds per stage.
    `conventions`: which ranking convention produced the numbers of each direction (`{"t2v": ..., "v2t": ...}`).
    `families`: with `family_labels`, `{"embedding"|"reranked": family_win_rates(...)}` (see `families`), and
    `"text"`: the same pairs scored by the text embedding alone (`caption_text_scores`; when every video has at
    least 2 captions): how well the caption embeddings alone separate each family. `top1`: with `family_labels`,
    `{"embedding"|"reranked": top1_breakdown(...)}`: where each caption's top-ranked video falls (its own, a
    sibling by factor, another family). `family_gains`: with `family_labels` and reranking, the reranked win rate
    minus the embedding's per family, with a 95% interval from a bootstrap over video pairs (`family_gain_intervals`).
    `ranks`: with `query_ranks=True`, `{"embedding"|"reranked": {"t2v": (texts,), "v2t": (videos,)}}` per-query
    1-based ranks from the same scores and conventions as `metrics` (`ranks_text_to_video`, `ranks_video_to_text`).
    """

    metrics: dict[str, dict[str, float]]
    similarity: torch.Tensor
    t2v_scores: torch.Tensor | None = None
    v2t_scores: torch.Tensor | None = None
    num_pairs_scored: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    conventions: dict[str, str] = field(default_factory=dict)
    families: dict[str, dict] = field(default_factory=dict)
    top1: dict[str, dict] = field(default_factory=dict)
    family_gains: dict[str, dict] = field(default_factory=dict)
    ranks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def metric_conventions(v2t_convention: str = "best_caption") -> dict[str, str]:
    """`{"t2v": ..., "v2t": "<name>: <what it ranks>"}`: the label evaluation output carries beside its numbers."""
    if v2t_convention not in V2T_CONVENTIONS:
        raise ValueError(f"v2t_convention={v2t_convention!r} is unknown: expected one of {sorted(V2T_CONVENTIONS)}.")
    return {"t2v": T2V_CONVENTION, "v2t": f"{v2t_convention}: {V2T_CONVENTIONS[v2t_convention]}"}


class VideoTokenStore:
    """
    Joint-encoder tokens of every gallery video, written once and read back by video index. Kept in memory while
    the whole store fits in `max_memory_bytes`, otherwise in a memory-mapped file in `directory` (a temporary one by
    default), so evaluation memory does not grow with the gallery.
    """

    def __init__(self, num_videos: int, dtype=np.float16, max_memory_bytes: int = 2**30, directory: str | None = None):
        self.num_videos = num_videos
        self.dtype = np.dtype(dtype)
        self.max_memory_bytes = max_memory_bytes
        self.directory = directory
        self._array = None
        self._tempdir = None

    @property
    def on_disk(self) -> bool:
        return isinstance(self._array, np.memmap)

    def _allocate(self, token_shape: tuple[int, int]) -> None:
        shape = (self.num_videos, *token_shape)
        size = math.prod(shape) * self.dtype.itemsize
        if size <= self.max_memory_bytes:
            self._array = np.empty(shape, dtype=self.dtype)
            return
        self._tempdir = tempfile.TemporaryDirectory(dir=self.directory, prefix="t2v2t_tokens_")
        path = f"{self._tempdir.name}/tokens.bin"
        logger.info("Video tokens take %.1f GB: storing them in %s", size / 1e9, path)
        self._array = np.memmap(path, dtype=self.dtype, mode="w+", shape=shape)

    def put(self, start: int, tokens: torch.Tensor) -> None:
        """Tokens (B, L, D) of videos `start .. start + B - 1`."""
        if self._array is None:
            self._allocate(tuple(tokens.shape[1:]))
        self._array[start:start + tokens.shape[0]] = tokens.detach().float().cpu().numpy().astype(self.dtype)

    def get(self, start: int, stop: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self._array[start:stop], dtype=np.float32))

    def close(self) -> None:
        self._array = None
        if self._tempdir is not None:
            self._tempdir.cleanup()


def _to_device(batch: dict, device) -> dict:
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def _concatenate(encodings: list):
    """One encoding of every batch's rows (same class as the batches'). Per-token fields (B, N, ...) are padded to
    the longest N: batches may be padded to different lengths."""
    fields = {}
    for key in encodings[0].keys():
        tensors = [encoding[key] for encoding in encodings]
        if tensors[0].ndim >= 2 and len({tensor.shape[1] for tensor in tensors}) > 1:
            length = max(tensor.shape[1] for tensor in tensors)
            tensors = [torch.nn.functional.pad(tensor, [0, 0] * (tensor.ndim - 2) + [0, length - tensor.shape[1]])
                       for tensor in tensors]
        fields[key] = torch.cat(tensors)
    return type(encodings[0])(**fields)


def encode_texts(model, text_batches, device, progress: bool) -> T2V2TTextEncoding:
    """Every caption batch through `model.encode_text`, as one encoding (batches padded to one length)."""
    encodings = []
    for batch in tqdm(text_batches, desc="Encoding captions", disable=not progress):
        batch = _to_device(batch, device)
        encodings.append(model.encode_text(batch["input_ids"], batch.get("attention_mask")))
    return _concatenate(encodings)


# Encoding fields the similarity hook never reads (each as large as the video tokens): not kept.
_NOT_KEPT = ("video_tokens", "vision_last_hidden_state", "hidden_states", "attentions")


def _encode_videos(model, video_batches, store: VideoTokenStore | None, device, progress: bool,
                   keep_encodings: bool = False):
    """Video embeddings (N, E), or with `keep_encodings` the whole encodings of every video (for
    `model.retrieval_similarity`); tokens for reranking go to `store`."""
    embeddings, kept, count = [], [], 0
    for batch in tqdm(video_batches, desc="Encoding videos", disable=not progress):
        pixels = batch["pixel_values_videos"] if isinstance(batch, dict) else batch
        encoding = model.encode_video(pixels.to(device))
        embeddings.append(encoding.video_embeds)
        if keep_encodings:
            kept.append(type(encoding)(**{key: value for key, value in encoding.items() if key not in _NOT_KEPT}))
        if store is not None:
            store.put(count, encoding.video_tokens)
        count += pixels.shape[0]
    return _concatenate(kept) if keep_encodings else torch.cat(embeddings)


def _reranked(similarity: torch.Tensor, chosen: torch.Tensor, pair_scores: torch.Tensor) -> torch.Tensor:
    """Candidates take their joint-encoder score; the rest keep their embedding order, strictly below every
    candidate (their ranks still count in R@50 and the mean rank)."""
    scores = similarity - similarity.max() + pair_scores[chosen].min() - 1.0
    scores[chosen] = pair_scores[chosen]
    return scores


def candidate_pairs(similarity: torch.Tensor, k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (texts, videos) masks of each caption's top-k videos and each video's top-k captions
    (`k=None`: every pair, i.e. exhaustive joint scoring)."""
    if k is None:
        everything = torch.ones_like(similarity, dtype=torch.bool)
        return everything, everything
    t2v = torch.zeros_like(similarity, dtype=torch.bool)
    t2v.scatter_(1, similarity.topk(min(k, similarity.shape[1]), dim=1).indices, True)
    v2t = torch.zeros_like(similarity, dtype=torch.bool)
    v2t.scatter_(0, similarity.topk(min(k, similarity.shape[0]), dim=0).indices, True)
    return t2v, v2t


def _score_with_joint_cache(model, texts, store, pairs, pair_batch_size, bar, video_embeds) -> torch.Tensor:
    """Video by video: build its joint-encoder cache once, then score every candidate caption of it in batches."""
    device = texts.text_states.device
    scores = torch.full(pairs.shape, float("nan"))
    for video in pairs.any(dim=0).nonzero(as_tuple=True)[0].tolist():
        text_index = pairs[:, video].nonzero(as_tuple=True)[0]
        tokens = store.get(video, video + 1).to(device=device, dtype=texts.text_states.dtype)
        embeds = None if video_embeds is None else video_embeds[video:video + 1].to(device)
        cached = model.build_joint_cache(T2V2TVideoEncoding(video_tokens=tokens, video_embeds=embeds))
        for begin in range(0, len(text_index), pair_batch_size):
            t = text_index[begin:begin + pair_batch_size]
            output = model.score_pairs(text_encoding=texts.select(t.to(device)), video_encoding=cached,
                                       video_index=torch.zeros(len(t), dtype=torch.long, device=device),
                                       use_joint_cache=True)
            scores[t, video] = output.scores.float().cpu()
            bar.update(len(t))
    bar.close()
    return scores


def score_candidates(model, texts: T2V2TTextEncoding, store: VideoTokenStore, pairs: torch.Tensor,
                     pair_batch_size: int = 32, video_chunk: int = 16, progress: bool = True,
                     video_embeds: torch.Tensor | None = None, use_joint_cache: bool | None = None) -> torch.Tensor:
    """Joint-encoder scores of every True pair of `pairs` (texts, videos); NaN elsewhere. `video_embeds`
    (videos, E) are needed when the score adds the VTC similarity (`rerank_score="vtm+vtc"`). `use_joint_cache`
    (default: when `model.supports_joint_cache`): per-video work once per video (exact); `False`: every pair
    through the reference `fuse` path."""
    if use_joint_cache is None:
        use_joint_cache = bool(getattr(model, "supports_joint_cache", False))
    bar = tqdm(total=int(pairs.sum()), desc="Reranking pairs", disable=not progress)
    if use_joint_cache:
        return _score_with_joint_cache(model, texts, store, pairs, pair_batch_size, bar, video_embeds)
    device = texts.text_states.device
    scores = torch.full(pairs.shape, float("nan"))
    for start in range(0, pairs.shape[1], video_chunk):
        stop = min(start + video_chunk, pairs.shape[1])
        text_index, video_index = pairs[:, start:stop].nonzero(as_tuple=True)  # grouped by this chunk's videos
        if len(text_index) == 0:
            continue
        tokens = store.get(start, stop).to(device=device, dtype=texts.text_states.dtype)
        for begin in range(0, len(text_index), pair_batch_size):
            t = text_index[begin:begin + pair_batch_size]
            v = video_index[begin:begin + pair_batch_size]
            embeds = None if video_embeds is None else video_embeds[(v + start).to(video_embeds.device)].to(device)
            output = model.score_pairs(text_encoding=texts.select(t.to(device)),
                                       video_encoding=T2V2TVideoEncoding(video_tokens=tokens[v.to(device)],
                                                                         video_embeds=embeds),
                                       use_joint_cache=False)
            scores[t, v + start] = output.scores.float().cpu()
            bar.update(len(t))
    bar.close()
    return scores


@torch.no_grad()
def evaluate_two_stage(
    model,
    text_batches: Iterable[dict],
    video_batches: Iterable,
    text_to_video,
    num_videos: int,
    k: int | None = 128,
    rerank: bool | None = None,
    pair_batch_size: int = 32,
    token_dtype=np.float16,
    max_memory_bytes: int = 2**30,
    progress: bool = True,
    v2t_convention: str = "best_caption",
    use_joint_cache: bool | None = None,
    family_labels: FamilyLabels | None = None,
    query_ranks: bool = False,
) -> TwoStageResult:
    """
    Evaluate text↔video retrieval of `model` on a gallery, embedding-only and reranked.

    The embedding stage scores every pair by `text_embeds @ video_embeds.T`, or, when the model defines
    `retrieval_similarity(text_encoding, video_encoding)` (X-Pool), by that method on the cached encodings.

    Args:
        text_batches: batches (dicts with `input_ids`, `attention_mask`) of every caption, in order.
        video_batches: batches (`pixel_values_videos` tensors or dicts holding them) of every video, in order.
        text_to_video: (num_texts,) index of each caption's video.
        num_videos: number of gallery videos (sizes the token store before the first batch arrives).
        k: candidates reranked per query (VindLU's `k_test=128`); `None` scores every pair (exhaustive).
        rerank: `None` reranks when the model has a joint encoder; `True` on a dual encoder raises.
        token_dtype: storage precision of the cached video tokens (float16 halves memory; float32 is exact).
        max_memory_bytes: token store size kept in memory; beyond it the store is a memory-mapped file.
        v2t_convention: multi-caption video→text ranking, `"best_caption"` (VindLU's) or `"per_video"`
            (CLIP4Clip's and X-Pool's); `result.conventions` says which produced the numbers.
        use_joint_cache: rerank through the exact per-video cache (default when `model.supports_joint_cache`), or
            `False` for the straightforward reference path (every pair re-projects the video tokens).
        family_labels: hard-negative families of the gallery (`FamilyLabels`): `result.families` then holds each
            family's win rate of a caption's own video over its siblings, embedding-only and reranked (t2v scores).
        query_ranks: also keep every query's rank in `result.ranks` (for paired statistics across runs).
    """
    conventions = metric_conventions(v2t_convention)
    has_joint = getattr(model.config, "has_joint_encoder", False)
    if rerank and not has_joint:
        what = "fusion_mode='none'" if getattr(model.config, "fusion_mode", None) == "none" else "an embedding model"
        raise ValueError(f"{type(model).__name__} has no joint encoder to rerank with ({what}).")
    similarity_hook = getattr(model, "retrieval_similarity", None)
    rerank = has_joint if rerank is None else rerank
    model.eval()
    device = next(model.parameters()).device
    timings = {}

    started = time.perf_counter()
    texts = encode_texts(model, text_batches, device, progress)
    timings["encode_texts"] = time.perf_counter() - started
    store = VideoTokenStore(num_videos, token_dtype, max_memory_bytes) if rerank else None
    try:
        started = time.perf_counter()
        videos = _encode_videos(model, video_batches, store, device, progress,
                                keep_encodings=similarity_hook is not None)
        timings["encode_videos"] = time.perf_counter() - started
        count = videos.shape[0] if isinstance(videos, torch.Tensor) else videos.video_embeds.shape[0]
        if count != num_videos:
            raise ValueError(f"num_videos={num_videos} but the video batches held {count} videos.")
        started = time.perf_counter()
        if similarity_hook is not None:
            similarity = similarity_hook(texts, videos).float().cpu()
        else:
            similarity = (texts.text_embeds @ videos.T).float().cpu()
        timings["similarity"] = time.perf_counter() - started
        metrics = {"embedding": retrieval_metrics(similarity, text_to_video, v2t_convention=v2t_convention)}
        result = TwoStageResult(metrics=metrics, similarity=similarity, timings=timings, conventions=conventions)
        if query_ranks:
            result.ranks["embedding"] = _query_ranks(similarity, similarity, text_to_video, v2t_convention)
        pairs_by_family = None if family_labels is None else family_pairs(family_labels, text_to_video)
        if pairs_by_family is not None:
            result.families["embedding"] = family_win_rates(similarity, text_to_video, family_labels, pairs_by_family)
            result.top1["embedding"] = top1_breakdown(similarity, text_to_video, family_labels)
            text_scores = (None if getattr(texts, "text_embeds", None) is None
                           else caption_text_scores(texts.text_embeds, text_to_video, num_videos))
            if text_scores is not None:
                result.families["text"] = family_win_rates(text_scores, text_to_video, family_labels, pairs_by_family)
            else:
                logger.info("No text-only family column: it needs text embeddings and at least 2 captions per video.")
        if not rerank:
            return result

        started = time.perf_counter()
        t2v_chosen, v2t_chosen = candidate_pairs(similarity, k)
        pairs = t2v_chosen | v2t_chosen  # a pair both directions ask for is scored once
        pair_scores = score_candidates(model, texts, store, pairs, pair_batch_size, progress=progress,
                                       video_embeds=videos if isinstance(videos, torch.Tensor) else None,
                                       use_joint_cache=use_joint_cache)
        timings["rerank"] = time.perf_counter() - started
    finally:
        if store is not None:
            store.close()
    result.t2v_scores = _reranked(similarity, t2v_chosen, pair_scores)
    result.v2t_scores = _reranked(similarity, v2t_chosen, pair_scores)
    result.num_pairs_scored = int(pairs.sum())
    metrics["reranked"] = retrieval_metrics(result.t2v_scores, text_to_video, similarity_v2t=result.v2t_scores,
                                            v2t_convention=v2t_convention)
    if pairs_by_family is not None:
        result.families["reranked"] = family_win_rates(result.t2v_scores, text_to_video, family_labels, pairs_by_family)
        result.top1["reranked"] = top1_breakdown(result.t2v_scores, text_to_video, family_labels)
        result.family_gains = family_gain_intervals(result.t2v_scores, similarity, text_to_video, family_labels,
                                                    pairs_by_family)
    if query_ranks:
        result.ranks["reranked"] = _query_ranks(result.t2v_scores, result.v2t_scores, text_to_video, v2t_convention)
    return result


def _query_ranks(t2v_scores: torch.Tensor, v2t_scores: torch.Tensor, text_to_video,
                 v2t_convention: str) -> dict[str, np.ndarray]:
    """Per-query ranks of one stage, from the scores `retrieval_metrics` read for it (each direction its own)."""
    return {"t2v": ranks_text_to_video(t2v_scores, text_to_video),
            "v2t": ranks_video_to_text(v2t_scores, text_to_video, v2t_convention=v2t_convention)}


__all__ = ["evaluate_two_stage", "TwoStageResult", "VideoTokenStore", "candidate_pairs", "encode_texts",
           "metric_conventions", "score_candidates"]
