"""Paired bootstrap of the difference between two retrieval methods over seeds and test queries.

Both methods are trained with the same seeds and ranked on the same queries, so each has a (seeds, queries) array of
per-query values (e.g. hit@1 from `query_ranks`). A bootstrap replicate draws seeds with replacement and queries
with replacement, the same indices for both methods (the pairing), and takes the mean of `value_A - value_B` over
the drawn seed-query grid. The 95% percentile interval of the replicates says how far seed-to-seed training noise
and the finite test set leave the difference undetermined; a difference is "decided" when the interval excludes 0.

scipy.stats.bootstrap(paired=True) resamples one axis only; this resamples seeds and queries together (two
levels), hence hand-written.
"""

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

_CHUNK = 1024  # replicates per step: bounds memory at about 2 x _CHUNK x queries numbers


@dataclass(frozen=True)
class PairedDifference:
    """
    `difference`: the observed mean of A - B over every seed and query (percentage points for recalls); `low`,
    `high`: the percentile interval at `confidence`; `decided`: the interval excludes 0; `better`: `"A"`, `"B"`
    or `None` (undecided).
    """

    difference: float
    low: float
    high: float
    confidence: float
    num_replicates: int
    num_seeds: int
    num_queries: int
    decided: bool
    better: str | None

    def verdict(self) -> str:
        """`"yes: A better"`, `"yes: B better"` or `"no"`."""
        return f"yes: {self.better} better" if self.decided else "no"


def _check_pair(values_a, values_b, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    for name, array in ((f"{what}_a", a), (f"{what}_b", b)):
        if array.ndim != 2:
            raise ValueError(f"{name} must be 2-D (seeds, queries), got shape {array.shape}.")
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"{name} must hold at least one seed and one query, got shape {array.shape}.")
    if a.shape != b.shape:
        raise ValueError(f"{what}_a has shape {a.shape} but {what}_b {b.shape}: a paired comparison needs the same "
                         "seeds (rows) and the same queries (columns) for both methods.")
    return a, b


def bootstrap_replicates(differences, num_replicates: int = 10_000, seed: int = 0) -> np.ndarray:
    """
    `num_replicates` means of a (seeds, queries) array of paired differences, each over a grid of seeds and queries
    drawn with replacement (seeds and queries independently).
    """
    d = np.asarray(differences, dtype=np.float64)
    num_seeds, num_queries = d.shape
    rng = np.random.default_rng(seed)
    replicates = np.empty(num_replicates)
    for start in range(0, num_replicates, _CHUNK):
        size = min(_CHUNK, num_replicates - start)
        seeds = rng.integers(0, num_seeds, size=(size, num_seeds))
        queries = rng.integers(0, num_queries, size=(size, num_queries))
        # Each replicate's drawn seeds as counts (size, seeds); counts @ d / seeds = the per-query mean over them.
        counts = (seeds[:, :, None] == np.arange(num_seeds)).sum(axis=1)
        per_query = counts @ d / num_seeds
        replicates[start:start + size] = np.take_along_axis(per_query, queries, axis=1).mean(axis=1)
    return replicates


def paired_bootstrap(values_a, values_b, num_replicates: int = 10_000, confidence: float = 0.95,
                     seed: int = 0) -> PairedDifference:
    """
    Paired bootstrap of mean(A - B) for per-seed per-query values of two methods.

    Args:
        values_a, values_b: (seeds, queries) arrays; row i of both is the same seed, column j the same query.
        num_replicates: bootstrap replicates.
        confidence: coverage of the percentile interval.
        seed: the resampling RNG's seed (the result is reproducible).
    """
    a, b = _check_pair(values_a, values_b, "values")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("values contain NaN; drop queries without a value from both methods first.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
    if num_replicates < 1:
        raise ValueError(f"num_replicates must be positive, got {num_replicates}.")
    differences = a - b
    replicates = bootstrap_replicates(differences, num_replicates, seed)
    tail = (1 - confidence) / 2
    low, high = (float(value) for value in np.quantile(replicates, [tail, 1 - tail]))
    better = "A" if low > 0 else "B" if high < 0 else None
    return PairedDifference(difference=float(differences.mean()), low=low, high=high, confidence=confidence,
                            num_replicates=num_replicates, num_seeds=a.shape[0], num_queries=a.shape[1],
                            decided=better is not None, better=better)


def paired_bootstrap_recall(ranks_a, ranks_b, k: int = 1, num_replicates: int = 10_000, confidence: float = 0.95,
                            seed: int = 0) -> PairedDifference:
    """
    Paired bootstrap of the difference in R@k (percentage points) between methods A and B.

    Args:
        ranks_a, ranks_b: (seeds, queries) 1-based ranks (`query_ranks.record_ranks`), row i of both from seed i,
            column j the same query. A query ranked by neither method in any seed (NaN: a video without a caption)
            is left out; a NaN in only some seeds or one method raises.
        k: the recall's cutoff; a query hits when its rank is <= k. (Under ties the ranks are expected ranks, so
            a tied query counts as a miss where `retrieval_metrics` counts its hit probability; float scores
            rarely tie.)

    Returns:
        `PairedDifference` in percentage points: `difference` = R@k(A) - R@k(B) averaged over seeds.
    """
    a, b = _check_pair(ranks_a, ranks_b, "ranks")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    missing = np.isnan(a) | np.isnan(b)
    unranked = missing.all(axis=0)
    if (missing.any(axis=0) & ~unranked).any():
        column = int(np.flatnonzero(missing.any(axis=0) & ~unranked)[0])
        raise ValueError(f"ranks of query {column} are NaN in some seeds or one method only: the two methods are "
                         "not ranked on the same queries.")
    if unranked.all():
        raise ValueError("no query has a rank.")
    if unranked.any():
        logger.info("%d queries without a rank (e.g. videos without a caption) are left out.", int(unranked.sum()))
    a, b = a[:, ~unranked], b[:, ~unranked]
    return paired_bootstrap(100.0 * (a <= k), 100.0 * (b <= k), num_replicates, confidence, seed)


__all__ = ["PairedDifference", "bootstrap_replicates", "paired_bootstrap", "paired_bootstrap_recall"]
