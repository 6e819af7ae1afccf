"""Text-video retrieval metrics: R@K, median rank (MdR) and mean rank (MnR), text→video and video→text.

Conventions (the ones papers in this field report):

- `similarity[i, j]` scores caption `i` against video `j`; higher means more similar. `text_to_video[i]` is the
  index of caption `i`'s ground-truth video; a video may have several captions.
- Text→video: every caption is a query; its rank is the position of its video among all videos.
- Video→text: every video is a query; two conventions for several captions per video, chosen by `v2t_convention`:
  `"best_caption"` (default; VindLU, and ours): the rank of the video's *best-ranked* caption among all captions
  (the first hit counts); `"per_video"` (CLIP4Clip's multi-sentence evaluation, X-Pool): every video's captions
  are pooled into one candidate scored by its best caption, and the query's own candidate is ranked among the
  videos' candidates. R@1 is the same under both; R@5/R@10/MdR/MnR are not (per_video has V candidates, not N).
- Recalls are percentages (0-100); ranks are 1-based.
- Ties: the score of a query is its expectation under uniformly random tie-breaking (see `retrieval_metrics`).
  Without ties this is the usual rank and the usual R@K. (CLIP4Clip's `compute_metrics` instead adds one rank
  entry per tied position; Collaborative Experts breaks ties in the target's favour.)

Ranks are counted chunk by chunk of queries (`(block > target).sum()`), never by sorting, so a 10k x 10k
similarity matrix needs no intermediate larger than `chunk_size` rows of booleans.

This file imports only torch, numpy and the standard library.
"""

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch


logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024
# R@1 + R@5 + R@10 (RSum) and their mean over both directions are what model selection uses.
_SUMMARY_RECALLS = (1, 5, 10)
_TABLE_COLUMNS = (("R@1", "R1"), ("R@5", "R5"), ("R@10", "R10"), ("MdR", "MdR"), ("MnR", "MnR"))
# The multi-caption video→text conventions `v2t_convention` accepts, and what each one ranks.
V2T_CONVENTIONS = {
    "best_caption": "each video's best-ranked caption among all captions (VindLU)",
    "per_video": "each video's captions pooled into one candidate scored by its best caption, ranked among the "
                 "videos (CLIP4Clip multi-sentence, X-Pool)",
}
T2V_CONVENTION = "each caption's video among all videos"


def _as_similarity(similarity, chunk_size: int) -> torch.Tensor:
    sim = similarity if isinstance(similarity, torch.Tensor) else torch.as_tensor(np.asarray(similarity))
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D (num_texts, num_videos), got shape {tuple(sim.shape)}")
    if sim.shape[0] == 0 or sim.shape[1] == 0:
        raise ValueError(f"similarity must have at least one text and one video, got shape {tuple(sim.shape)}")
    if sim.dtype == torch.bool or sim.is_complex():
        raise ValueError(f"similarity must hold real scores, got dtype {sim.dtype}")
    if sim.is_floating_point():
        # Every comparison with NaN is False, so a NaN would silently count as "not higher": refuse it instead.
        for start in range(0, sim.shape[0], chunk_size):
            nan = torch.isnan(sim[start : start + chunk_size])
            if nan.any():
                row, col = (int(i) for i in nan.nonzero()[0])
                raise ValueError(f"similarity contains NaN (first at text {start + row}, video {col})")
    return sim


def _as_targets(text_to_video, sim: torch.Tensor) -> torch.Tensor:
    num_texts, num_videos = sim.shape
    targets = text_to_video if isinstance(text_to_video, torch.Tensor) else torch.as_tensor(np.asarray(text_to_video))
    if targets.ndim != 1 or targets.shape[0] != num_texts:
        raise ValueError(
            f"text_to_video must have shape ({num_texts},) to match similarity of shape {tuple(sim.shape)}, "
            f"got shape {tuple(targets.shape)}"
        )
    if targets.dtype == torch.bool or targets.is_floating_point() or targets.is_complex():
        raise ValueError(f"text_to_video must hold integer video indices, got dtype {targets.dtype}")
    targets = targets.to(device=sim.device, dtype=torch.long)
    bad = (targets < 0) | (targets >= num_videos)
    if bad.any():
        text = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"text_to_video values must lie in [0, {num_videos}) (num_videos); "
            f"text {text} has video index {int(targets[text])}"
        )
    return targets


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _text_to_video_counts(sim: torch.Tensor, targets: torch.Tensor, chunk_size: int):
    """Per caption: (#videos scoring strictly higher than its video, #positives in the tie = 1, #other videos tied)."""
    num_texts = sim.shape[0]
    higher = torch.empty(num_texts, dtype=torch.long)
    tied = torch.empty(num_texts, dtype=torch.long)
    for start in range(0, num_texts, chunk_size):
        block = sim[start : start + chunk_size]  # (C, V)
        target = block.gather(1, targets[start : start + chunk_size, None])  # (C, 1)
        # int32 sums: exact (< 2**31 candidates) and faster than the default int64 on CPU.
        higher[start : start + len(block)] = (block > target).sum(1, dtype=torch.int32).cpu()
        tied[start : start + len(block)] = (block == target).sum(1, dtype=torch.int32).cpu() - 1  # minus itself
    return higher.numpy(), np.ones(num_texts, dtype=np.int64), tied.numpy()


def _video_to_text_counts(sim: torch.Tensor, targets: torch.Tensor, chunk_size: int):
    """
    Per video, against its best-scoring caption: (#captions strictly higher, #own captions tied with the best,
    #other captions tied with the best), and a mask of the videos that have at least one caption.
    """
    num_texts, num_videos = sim.shape
    has_caption = torch.bincount(targets, minlength=num_videos).cpu().numpy() > 0
    positive_scores = sim.gather(1, targets[:, None]).squeeze(1)  # (N,)
    # Videos without a caption keep the placeholder 0; their counts are meaningless and masked by has_caption.
    best = torch.zeros(num_videos, dtype=sim.dtype, device=sim.device).scatter_reduce(
        0, targets, positive_scores, "amax", include_self=False
    )
    # Own captions that tie with the best one, counted in O(N) rather than with a (N, V) ownership mask.
    tied_positive = torch.bincount(targets[positive_scores == best[targets]], minlength=num_videos).cpu()
    higher = torch.empty(num_videos, dtype=torch.long)
    tied_all = torch.empty(num_videos, dtype=torch.long)
    for start in range(0, num_videos, chunk_size):
        stop = min(start + chunk_size, num_videos)
        block = sim[:, start:stop]  # (N, C)
        level = best[None, start:stop]  # (1, C)
        # No own caption scores above `best`, so every caption strictly higher is a wrong one.
        higher[start:stop] = (block > level).sum(0, dtype=torch.int32).cpu()
        tied_all[start:stop] = (block == level).sum(0, dtype=torch.int32).cpu()
    tied_negative = tied_all - tied_positive
    num_missing = int((~has_caption).sum())
    if num_missing:
        logger.warning(
            "%d of %d videos have no caption in text_to_video: they stay text->video candidates (distractors) "
            "but are left out of the video->text queries.",
            num_missing,
            num_videos,
        )
    return higher.numpy(), tied_positive.numpy(), tied_negative.numpy(), has_caption


def _video_to_text_counts_per_video(sim: torch.Tensor, targets: torch.Tensor, chunk_size: int):
    """
    CLIP4Clip's / X-Pool's convention: candidate `g` for query video `v` scores `max over g's captions of
    sim[caption, v]`; per video, against its own candidate: (#candidates strictly higher, 1, #other candidates tied),
    and a mask of the videos that have at least one caption (the others are neither queries nor candidates).
    """
    num_videos = sim.shape[1]
    has_caption_t = torch.bincount(targets, minlength=num_videos) > 0
    has_caption = has_caption_t.cpu().numpy()
    higher = torch.zeros(num_videos, dtype=torch.long)
    tied = torch.zeros(num_videos, dtype=torch.long)
    for start in range(0, num_videos, chunk_size):
        stop = min(start + chunk_size, num_videos)
        block = sim[:, start:stop]  # (N, C): every caption against these query videos
        # (V, C): candidate g's best caption score for each query video; -inf for videos without captions.
        pooled = torch.full((num_videos, stop - start), float("-inf"), dtype=torch.float64, device=sim.device)
        pooled = pooled.scatter_reduce(0, targets[:, None].expand_as(block), block.double(), "amax")
        own = pooled[torch.arange(start, stop, device=sim.device), torch.arange(stop - start, device=sim.device)]
        candidates = pooled[has_caption_t]
        higher[start:stop] = (candidates > own).sum(0, dtype=torch.int32).cpu()
        tied[start:stop] = (candidates == own).sum(0, dtype=torch.int32).cpu() - 1
    return higher.numpy(), np.ones(num_videos, dtype=np.int64), tied.numpy(), has_caption


def _v2t_counts(sim: torch.Tensor, targets: torch.Tensor, chunk_size: int, convention: str):
    if convention not in V2T_CONVENTIONS:
        raise ValueError(f"v2t_convention={convention!r} is unknown: expected one of {sorted(V2T_CONVENTIONS)}.")
    if convention == "per_video":
        counts = _video_to_text_counts_per_video(sim, targets, chunk_size)
        missing = int((~counts[3]).sum())
        if missing:
            logger.warning("%d of %d videos have no caption in text_to_video: they are neither video->text queries "
                           "nor per-video candidates.", missing, sim.shape[1])
        return counts
    return _video_to_text_counts(sim, targets, chunk_size)


def _expected_rank(higher: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    # With `positives` correct and `negatives` wrong candidates tied in random order, each wrong one precedes all
    # correct ones with probability 1 / (positives + 1).
    return 1.0 + higher + negatives / (positives + 1.0)


def _hit_probability(higher: np.ndarray, positives: np.ndarray, negatives: np.ndarray, k: int) -> np.ndarray:
    """P(rank <= k) under uniformly random tie-breaking."""
    slots = np.clip(k - higher, 0, positives + negatives)  # tied places that still fall within the top k
    # P(no correct candidate among the first `slots` tied places) = C(negatives, slots) / C(ties, slots); it is 0
    # once slots > negatives. In float64 lgamma this is accurate to ~1e-11 even for 20k ties.
    n = torch.as_tensor(negatives, dtype=torch.float64)
    total = n + torch.as_tensor(positives, dtype=torch.float64)
    j = torch.as_tensor(slots, dtype=torch.float64)
    possible = j <= n
    j = torch.minimum(j, n)
    log_miss = torch.lgamma(n + 1) - torch.lgamma(n - j + 1) - torch.lgamma(total + 1) + torch.lgamma(total - j + 1)
    miss = torch.where(possible, log_miss.exp(), torch.zeros_like(log_miss))
    return (1.0 - miss).numpy()


def _summarise(prefix: str, counts, recall_at: Sequence[int]) -> dict[str, float]:
    higher, positives, negatives = counts
    recalls = {k: 100.0 * float(_hit_probability(higher, positives, negatives, k).mean()) for k in recall_at}
    for k in _SUMMARY_RECALLS:
        if k not in recalls:
            recalls[k] = 100.0 * float(_hit_probability(higher, positives, negatives, k).mean())
    ranks = _expected_rank(higher, positives, negatives)
    metrics = {f"{prefix}_R{k}": recalls[k] for k in recall_at}
    metrics[f"{prefix}_MdR"] = float(np.median(ranks))
    metrics[f"{prefix}_MnR"] = float(ranks.mean())
    metrics[f"{prefix}_RSum"] = sum(recalls[k] for k in _SUMMARY_RECALLS)
    return metrics


def _check_recall_at(recall_at) -> tuple[int, ...]:
    if isinstance(recall_at, (int, np.integer)):
        recall_at = (recall_at,)
    checked = []
    for k in recall_at:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"recall_at must hold positive integers, got {k!r}")
        checked.append(int(k))
    return tuple(dict.fromkeys(checked))  # drop duplicates, keep order


def ranks_text_to_video(similarity, text_to_video, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """
    Rank (1-based) of each caption's ground-truth video among all videos, for per-query analysis.

    Args:
        similarity: `(num_texts, num_videos)` torch tensor or array-like; higher = more similar. No NaN.
        text_to_video: `(num_texts,)` integer ground-truth video index of each caption.
        chunk_size: captions compared at a time (memory: `chunk_size * num_videos` booleans).

    Returns:
        `(num_texts,)` float64 array: `1 + #videos scoring strictly higher + (#other videos tied) / 2`, the
        expected rank under random tie-breaking; integer-valued when there are no ties.

    Example:

    ```python
    >>> ranks_text_to_video([[0.9, 0.1], [0.8, 0.2], [0.5, 0.5]], [0, 1, 1]).tolist()
    [1.0, 2.0, 1.5]

    ```
    """
    _check_chunk_size(chunk_size)
    sim = _as_similarity(similarity, chunk_size)
    return _expected_rank(*_text_to_video_counts(sim, _as_targets(text_to_video, sim), chunk_size))


def ranks_video_to_text(similarity, text_to_video, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                        v2t_convention: str = "best_caption") -> np.ndarray:
    """
    Rank (1-based) of each video's best-ranked caption among all captions (`v2t_convention="best_caption"`), or of
    its own captions among the videos' pooled captions (`"per_video"`, see `V2T_CONVENTIONS`), per query.

    Args:
        similarity: `(num_texts, num_videos)` torch tensor or array-like; higher = more similar. No NaN.
        text_to_video: `(num_texts,)` integer ground-truth video index of each caption.
        chunk_size: videos compared at a time (memory: `num_texts * chunk_size` booleans).
        v2t_convention: `"best_caption"` or `"per_video"`.

    Returns:
        `(num_videos,)` float64 array: expected rank under random tie-breaking (integer-valued without ties).
        Videos that no caption refers to have no rank: NaN there, and a warning is logged.

    Example:

    ```python
    >>> # Video 0 (captions 0 and 1): its best caption, caption 1 (0.8), ranks 1st. Video 1: its caption 2 (0.4)
    >>> # ranks 2nd, behind caption 0 (0.9). Video 2 has no caption.
    >>> ranks_video_to_text([[0.1, 0.9, 0.0], [0.8, 0.2, 0.0], [0.6, 0.4, 0.0]], [0, 0, 1]).tolist()
    [1.0, 2.0, nan]

    ```
    """
    _check_chunk_size(chunk_size)
    sim = _as_similarity(similarity, chunk_size)
    higher, positives, negatives, has_caption = _v2t_counts(
        sim, _as_targets(text_to_video, sim), chunk_size, v2t_convention
    )
    return np.where(has_caption, _expected_rank(higher, positives, negatives), np.nan)


def retrieval_metrics(
    similarity,
    text_to_video,
    recall_at: Sequence[int] = (1, 5, 10, 50),
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    similarity_v2t=None,
    v2t_convention: str = "best_caption",
) -> dict[str, float]:
    """
    Text→video and video→text retrieval metrics from a caption-by-video similarity matrix.

    Args:
        similarity: `(num_texts, num_videos)` torch tensor (any device) or array-like; higher = more similar.
            A NaN raises `ValueError` (NaN compares False with everything, which would silently flatter it).
        text_to_video: `(num_texts,)` integer index of each caption's ground-truth video; several captions may
            share a video. Values outside `[0, num_videos)` raise `ValueError`.
        recall_at: the K of the reported R@K.
        chunk_size: queries compared at a time, bounding the intermediate memory.
        similarity_v2t: optional `(num_texts, num_videos)` scores for the video→text direction only, when the two
            directions were scored differently (two-stage search reranks each direction's own top-k).
        v2t_convention: how a video query with several captions is ranked (`V2T_CONVENTIONS`): `"best_caption"`
            (default; VindLU's) or `"per_video"` (CLIP4Clip's multi-sentence evaluation and X-Pool's).

    Returns:
        `{"t2v_R1", "t2v_R5", "t2v_R10", "t2v_R50", "t2v_MdR", "t2v_MnR", "t2v_RSum", "v2t_R1", ..., "v2t_RSum",
        "mean_recall"}` as floats: R@K in percent (one key per `recall_at`), median and mean 1-based rank,
        `RSum = R@1 + R@5 + R@10` per direction, and `mean_recall` = the mean of the six R@1/5/10 values (for
        model selection). RSum and mean_recall are computed even if 1, 5 or 10 are not in `recall_at`.

    Text→video queries are the captions (rank of the correct video among all videos). Video→text queries are the
    videos: with `"best_caption"` the rank of the best-ranked of its captions among all captions; with
    `"per_video"` the rank, among the videos, of its own captions' best score when each video's captions count as
    one candidate scored by their best. A video that no caption refers to is left out of the video→text queries
    (it stays a text→video distractor) and a warning is logged.

    Ties: each query counts with its *expected* value under uniformly random tie-breaking: R@K is the probability
    that the rank is <= K and the rank is `1 + #strictly higher + #tied wrong candidates / (#tied correct + 1)`.
    Ranking ties in the target's favour (`1 + #strictly higher`, as Collaborative Experts does) would give a
    collapsed model that scores every pair alike R@1 = 100; against the target (`1 + #higher or equal`) would
    give 0; CLIP4Clip's `compute_metrics` adds one rank entry per tied position (a query tied with n others
    counts n + 1 times). The expectation is unbiased, deterministic, and identical to all of these when nothing
    ties (the usual case for float32 scores), so numbers stay comparable with papers. MdR is the median of these
    expected ranks.

    Example:

    ```python
    >>> import torch
    >>> similarity = torch.tensor([[0.9, 0.1, 0.2],   # caption 0 -> video 0 ranks 1st
    ...                            [0.3, 0.5, 0.4],   # caption 1 -> video 0 ranks 3rd
    ...                            [0.1, 0.9, 0.3]])  # caption 2 -> video 2 ranks 2nd
    >>> metrics = retrieval_metrics(similarity, [0, 0, 2], recall_at=(1, 5))
    >>> metrics["t2v_R1"], metrics["t2v_MdR"], metrics["t2v_MnR"]
    (33.33333333333333, 2.0, 2.0)
    >>> # Video 0's best caption (caption 0) ranks 1st; video 2's caption ranks 2nd (behind caption 1's 0.4);
    >>> # video 1 has no caption and is left out of the video->text queries.
    >>> metrics["v2t_R1"], metrics["v2t_MdR"]
    (50.0, 1.5)

    ```
    """
    _check_chunk_size(chunk_size)
    recall_at = _check_recall_at(recall_at)
    if v2t_convention not in V2T_CONVENTIONS:
        raise ValueError(f"v2t_convention={v2t_convention!r} is unknown: expected one of {sorted(V2T_CONVENTIONS)}.")
    sim = _as_similarity(similarity, chunk_size)
    targets = _as_targets(text_to_video, sim)
    metrics = _summarise("t2v", _text_to_video_counts(sim, targets, chunk_size), recall_at)
    if similarity_v2t is not None:
        sim_v2t = _as_similarity(similarity_v2t, chunk_size)
        if sim_v2t.shape != sim.shape:
            raise ValueError(f"similarity_v2t has shape {tuple(sim_v2t.shape)}, similarity {tuple(sim.shape)}.")
        sim = sim_v2t
    higher, positives, negatives, has_caption = _v2t_counts(sim, targets, chunk_size, v2t_convention)
    metrics.update(_summarise("v2t", (higher[has_caption], positives[has_caption], negatives[has_caption]), recall_at))
    metrics["mean_recall"] = (metrics["t2v_RSum"] + metrics["v2t_RSum"]) / (2 * len(_SUMMARY_RECALLS))
    return metrics


def format_metrics_table(results: Mapping[str, Mapping[str, float]], digits: int = 1) -> str:
    """
    Markdown table of several runs' metrics: one row per run, columns R@1 R@5 R@10 MdR MnR for t2v then v2t.

    Args:
        results: run name (e.g. `"embedding"`, `"reranked"`) -> a `retrieval_metrics` dict. Missing keys show `-`.
        digits: decimals shown.

    Example:

    ```python
    >>> print(format_metrics_table({"embedding": {"t2v_R1": 42.13, "t2v_MdR": 2.0, "v2t_R1": 40.0}}))
    | run | t2v R@1 | t2v R@5 | t2v R@10 | t2v MdR | t2v MnR | v2t R@1 | v2t R@5 | v2t R@10 | v2t MdR | v2t MnR |
    |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
    | embedding | 42.1 | - | - | 2.0 | - | 40.0 | - | - | - | - |

    ```
    """
    keys = [
        (f"{direction} {title}", f"{direction}_{suffix}")
        for direction in ("t2v", "v2t")
        for title, suffix in _TABLE_COLUMNS
    ]
    lines = [
        "| run | " + " | ".join(title for title, _ in keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for name, metrics in results.items():
        cells = [f"{metrics[key]:.{digits}f}" if key in metrics else "-" for _, key in keys]
        lines.append(f"| {str(name).replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "T2V_CONVENTION",
    "V2T_CONVENTIONS",
    "format_metrics_table",
    "ranks_text_to_video",
    "ranks_video_to_text",
    "retrieval_metrics",
]
