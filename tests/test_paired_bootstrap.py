"""Paired bootstrap over seeds and queries (`modeling_t2v2t.retrieval.paired_bootstrap`): hand-checkable cases,
the exact bootstrap distribution of a small case by enumeration, noise that stays undecided, clear errors, speed."""

import itertools
import time
from collections import Counter

import numpy as np
import pytest

from modeling_t2v2t.retrieval.paired_bootstrap import bootstrap_replicates, paired_bootstrap, paired_bootstrap_recall


def test_identical_methods_differ_by_exactly_zero_and_are_not_decided():
    ranks = np.random.default_rng(0).integers(1, 20, size=(5, 100)).astype(float)
    result = paired_bootstrap_recall(ranks, ranks.copy())
    assert (result.difference, result.low, result.high) == (0.0, 0.0, 0.0)
    assert not result.decided and result.better is None and result.verdict() == "no"
    assert (result.num_seeds, result.num_queries, result.num_replicates) == (5, 100, 10_000)


def test_always_hit_against_never_hit_is_plus_100_either_way_round():
    always, never = np.ones((5, 50)), np.full((5, 50), 7.0)
    result = paired_bootstrap_recall(always, never)
    assert (result.difference, result.low, result.high) == (100.0, 100.0, 100.0)
    assert result.decided and result.verdict() == "yes: A better"
    reverse = paired_bootstrap_recall(never, always)
    assert (reverse.difference, reverse.low, reverse.high) == (-100.0, -100.0, -100.0)
    assert reverse.verdict() == "yes: B better"
    assert paired_bootstrap_recall(never, always, k=7).difference == 0.0  # the cutoff k counts rank <= k


def exact_distribution(differences: np.ndarray) -> dict[float, float]:
    """Every equally likely (seed draw, query draw) of the two-level bootstrap, enumerated: value -> probability."""
    seeds, queries = differences.shape
    counts = Counter()
    for seed_draw in itertools.product(range(seeds), repeat=seeds):
        for query_draw in itertools.product(range(queries), repeat=queries):
            counts[round(float(differences[np.ix_(seed_draw, query_draw)].mean()), 9)] += 1
    total = sum(counts.values())
    return {value: count / total for value, count in sorted(counts.items())}


def quantile(distribution: dict[float, float], p: float) -> float:
    cumulative = 0.0
    for value, probability in distribution.items():
        cumulative += probability
        if cumulative >= p - 1e-12:
            return value
    return value


def test_a_small_case_matches_the_enumerated_bootstrap_distribution():
    # 2 seeds x 3 queries: 2^2 * 3^3 = 108 equally likely resamples.
    hits_a = np.array([[1, 1, 0], [1, 0, 1]])
    hits_b = np.array([[0, 1, 0], [0, 1, 0]])
    ranks_a, ranks_b = np.where(hits_a, 1.0, 3.0), np.where(hits_b, 1.0, 2.0)
    exact = exact_distribution(100.0 * (hits_a - hits_b))
    result = paired_bootstrap_recall(ranks_a, ranks_b, num_replicates=40_000, seed=3)
    assert result.difference == pytest.approx(100 * (4 / 6 - 2 / 6))  # R@1 66.7% vs 33.3% over both seeds
    assert quantile(exact, 0.02) <= result.low <= quantile(exact, 0.03)
    assert quantile(exact, 0.97) <= result.high <= quantile(exact, 0.98)
    replicates = np.round(bootstrap_replicates(100.0 * (hits_a - hits_b), 40_000, seed=3), 9)
    assert set(np.unique(replicates)) <= set(exact)  # only values a resample can take
    for value, probability in exact.items():
        assert np.mean(replicates == value) == pytest.approx(probability, abs=0.01), value
    assert replicates.mean() == pytest.approx(sum(v * p for v, p in exact.items()), abs=0.5)


def test_noise_leaves_a_small_difference_undecided_and_the_result_is_reproducible():
    rng = np.random.default_rng(7)
    hits_a, hits_b = rng.random((5, 40)) < 0.32, rng.random((5, 40)) < 0.3
    ranks_a, ranks_b = np.where(hits_a, 1.0, 9.0), np.where(hits_b, 1.0, 9.0)
    result = paired_bootstrap_recall(ranks_a, ranks_b)
    assert result.low < 0 < result.high and not result.decided and result.verdict() == "no"
    assert result == paired_bootstrap_recall(ranks_a, ranks_b)  # fixed RNG seed
    assert result.high - result.low > 10  # 40 queries cannot pin a few points down


def test_values_version_takes_hit_probabilities_and_v2t_queries_without_a_caption_are_left_out():
    result = paired_bootstrap(np.full((2, 4), 0.5), np.zeros((2, 4)))
    assert (result.difference, result.low, result.high) == (0.5, 0.5, 0.5)
    ranks_a = np.array([[1.0, np.nan, 1.0], [1.0, np.nan, 1.0]])
    ranks_b = np.array([[2.0, np.nan, 1.0], [2.0, np.nan, 1.0]])
    result = paired_bootstrap_recall(ranks_a, ranks_b)
    assert result.num_queries == 2 and result.difference == 50.0


@pytest.mark.parametrize("a_shape, b_shape, message", [
    ((5, 100), (5, 99), r"ranks_a has shape \(5, 100\) but ranks_b \(5, 99\).*same seeds \(rows\) and the same "
                        r"queries \(columns\)"),
    ((4, 100), (5, 100), r"ranks_a has shape \(4, 100\) but ranks_b \(5, 100\)"),
    ((100,), (100,), r"ranks_a must be 2-D \(seeds, queries\), got shape \(100,\)"),
    ((5, 0), (5, 0), r"at least one seed and one query"),
])
def test_shape_mismatch_is_a_clear_error(a_shape, b_shape, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap_recall(np.ones(a_shape), np.ones(b_shape))


def test_other_bad_input_is_refused():
    with pytest.raises(ValueError, match="query 1 are NaN in some seeds or one method only"):
        paired_bootstrap_recall(np.array([[1.0, np.nan], [1.0, 2.0]]), np.ones((2, 2)))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        paired_bootstrap_recall(np.ones((2, 2)), np.ones((2, 2)), k=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(np.ones((2, 2)), np.ones((2, 2)), confidence=95)


def test_ten_thousand_replicates_of_5_seeds_by_1000_queries_take_well_under_a_second():
    rng = np.random.default_rng(0)
    ranks_a, ranks_b = rng.integers(1, 5, size=(5, 1000)), rng.integers(1, 5, size=(5, 1000))
    paired_bootstrap_recall(ranks_a, ranks_b, num_replicates=100)  # warm-up
    started = time.perf_counter()
    result = paired_bootstrap_recall(ranks_a, ranks_b, num_replicates=10_000)
    assert time.perf_counter() - started < 1.0
    assert result.num_replicates == 10_000
