"""Retrieval metrics against a deliberately naive full-matrix implementation, exact hand-built cases, and the
`evaluate` module (loaded offline from its folder)."""

import doctest
import itertools
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_t2v2t.retrieval import metrics as retrieval_metrics_module
from modeling_t2v2t.retrieval.metrics import (
    format_metrics_table,
    ranks_text_to_video,
    ranks_video_to_text,
    retrieval_metrics,
)


METRIC_FOLDER = Path(__file__).resolve().parents[1] / "metrics" / "text_video_retrieval"
RECALL_AT = (1, 5, 10, 50)


# ---------------------------------------------------------------- naive reference


def _naive_query(scores, correct, ks):
    """
    Expected rank and P(rank <= k) of the best correct candidate, by sorting and then enumerating every equally
    likely placement of the correct candidates inside the tie group that holds the best of them.
    """
    order = sorted(range(len(scores)), key=lambda c: -scores[c])  # argsort, descending
    best = max(scores[c] for c in correct)
    before = sum(1 for c in order if scores[c] > best)
    group = [c for c in order if scores[c] == best]
    num_correct = sum(1 for c in group if c in correct)
    placements = list(itertools.combinations(range(len(group)), num_correct))
    ranks = [before + 1 + min(places) for places in placements]
    expected_rank = sum(ranks) / len(ranks)
    hits = {k: sum(rank <= k for rank in ranks) / len(ranks) for k in ks}
    return expected_rank, hits


def _naive_direction(prefix, per_query, ks):
    ranks = [rank for rank, _ in per_query]
    metrics = {f"{prefix}_R{k}": 100.0 * sum(hits[k] for _, hits in per_query) / len(per_query) for k in ks}
    metrics[f"{prefix}_MdR"] = float(np.median(ranks))
    metrics[f"{prefix}_MnR"] = sum(ranks) / len(ranks)
    metrics[f"{prefix}_RSum"] = metrics[f"{prefix}_R1"] + metrics[f"{prefix}_R5"] + metrics[f"{prefix}_R10"]
    return metrics, ranks


def naive_metrics(similarity, text_to_video, ks=RECALL_AT):
    """Python loops over the whole matrix; returns (metrics, t2v ranks, v2t ranks with None for caption-less videos)."""
    sim = np.asarray(similarity, dtype=np.float64).tolist()
    num_texts, num_videos = len(sim), len(sim[0])
    ks = tuple(sorted(set(ks) | {1, 5, 10}))
    t2v = [_naive_query(sim[i], {int(text_to_video[i])}, ks) for i in range(num_texts)]
    v2t_all = []
    for v in range(num_videos):
        captions = {i for i in range(num_texts) if text_to_video[i] == v}
        column = [sim[i][v] for i in range(num_texts)]
        v2t_all.append(_naive_query(column, captions, ks) if captions else None)
    metrics, t2v_ranks = _naive_direction("t2v", t2v, ks)
    v2t_metrics, _ = _naive_direction("v2t", [query for query in v2t_all if query is not None], ks)
    metrics.update(v2t_metrics)
    metrics["mean_recall"] = (metrics["t2v_RSum"] + metrics["v2t_RSum"]) / 6
    v2t_ranks = [None if query is None else query[0] for query in v2t_all]
    return metrics, t2v_ranks, v2t_ranks


def random_case(seed, num_videos=9, captions_per_video=3, decimals=1):
    """Several captions per video, shuffled; rounding to `decimals` makes ties frequent."""
    rng = np.random.default_rng(seed)
    text_to_video = rng.permutation(np.repeat(np.arange(num_videos), captions_per_video))
    similarity = rng.random((len(text_to_video), num_videos))
    # Nudge the correct pairs up so ranks spread over 1..num_videos instead of being uniform.
    similarity[np.arange(len(text_to_video)), text_to_video] += 0.3 * rng.random(len(text_to_video))
    return np.round(similarity, decimals), text_to_video


def assert_metrics_close(actual, expected):
    assert actual.keys() == expected.keys()
    for key in expected:
        assert actual[key] == pytest.approx(expected[key], abs=1e-9), key


# ---------------------------------------------------------------- against the naive version


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [1, 8])
def test_matches_naive_with_and_without_ties(seed, decimals):
    similarity, text_to_video = random_case(seed, decimals=decimals)
    if decimals == 1:
        tied_rows = sum(len(set(row)) < len(row) for row in similarity)
        assert tied_rows > len(similarity) // 2  # the tie rule really is exercised
    expected, t2v_ranks, v2t_ranks = naive_metrics(similarity, text_to_video)
    assert_metrics_close(retrieval_metrics(similarity, text_to_video), expected)
    np.testing.assert_allclose(ranks_text_to_video(similarity, text_to_video), t2v_ranks)
    np.testing.assert_allclose(ranks_video_to_text(similarity, text_to_video), v2t_ranks)


def test_matches_naive_with_many_captions_tied_for_one_video():
    # Coarse scores: a video's correct captions often tie with each other and with wrong ones (m > 1 in a tie).
    rng = np.random.default_rng(7)
    text_to_video = np.repeat(np.arange(4), 5)
    similarity = rng.integers(0, 3, size=(20, 4)).astype(np.float32)
    expected, _, v2t_ranks = naive_metrics(similarity, text_to_video, ks=(1, 2, 3, 5, 10))
    assert_metrics_close(retrieval_metrics(similarity, text_to_video, recall_at=(1, 2, 3, 5, 10)), expected)
    np.testing.assert_allclose(ranks_video_to_text(similarity, text_to_video), v2t_ranks)


# ---------------------------------------------------------------- exact known answers

# 5 captions, 3 videos; captions 0,1 -> video 0, captions 2,3 -> video 1, caption 4 -> video 2. No ties.
KNOWN_SIMILARITY = np.array(
    [
        [0.9, 0.1, 0.2],  # caption 0: video 0 ranks 1
        [0.3, 0.5, 0.4],  # caption 1: video 0 ranks 3
        [0.6, 0.7, 0.1],  # caption 2: video 1 ranks 1
        [0.8, 0.2, 0.5],  # caption 3: video 1 ranks 3
        [0.1, 0.9, 0.3],  # caption 4: video 2 ranks 2
    ]
)
KNOWN_TARGETS = [0, 0, 1, 1, 2]


def test_known_answer_text_to_video():
    assert ranks_text_to_video(KNOWN_SIMILARITY, KNOWN_TARGETS).tolist() == [1, 3, 1, 3, 2]
    metrics = retrieval_metrics(KNOWN_SIMILARITY, KNOWN_TARGETS, recall_at=(1, 2, 5))
    assert metrics["t2v_R1"] == pytest.approx(40.0)
    assert metrics["t2v_R2"] == pytest.approx(60.0)
    assert metrics["t2v_R5"] == pytest.approx(100.0)
    assert metrics["t2v_MdR"] == 2.0
    assert metrics["t2v_MnR"] == pytest.approx(2.0)
    assert metrics["t2v_RSum"] == pytest.approx(240.0)


def test_known_answer_video_to_text_uses_best_caption():
    # Video 0: best caption 0 (0.9) ranks 1. Video 1: best caption 2 (0.7) ranks 2 behind caption 4 (0.9);
    # its other caption 3 (0.2) would rank 4. Video 2: caption 4 (0.3) ranks 3 behind 0.5 and 0.4.
    assert ranks_video_to_text(KNOWN_SIMILARITY, KNOWN_TARGETS).tolist() == [1, 2, 3]
    metrics = retrieval_metrics(KNOWN_SIMILARITY, KNOWN_TARGETS, recall_at=(1, 2))
    assert metrics["v2t_R1"] == pytest.approx(100 / 3)
    assert metrics["v2t_R2"] == pytest.approx(200 / 3)
    assert metrics["v2t_MdR"] == 2.0
    assert metrics["v2t_MnR"] == pytest.approx(2.0)
    assert metrics["mean_recall"] == pytest.approx((40 + 100 + 100 + 100 / 3 + 100 + 100) / 6)


def test_no_ties_matches_plain_argsort_ranks():
    rng = np.random.default_rng(3)
    similarity = rng.standard_normal((30, 12))
    text_to_video = rng.integers(0, 12, 30)
    order = np.argsort(-similarity, axis=1)
    argsort_ranks = [int(np.nonzero(order[i] == text_to_video[i])[0][0]) + 1 for i in range(30)]
    assert ranks_text_to_video(similarity, text_to_video).tolist() == argsort_ranks


def test_ties_count_with_their_expectation():
    # One caption tied with 2 wrong videos (and below none): rank 1, 2 or 3 with probability 1/3 each.
    metrics = retrieval_metrics([[1.0, 1.0, 1.0, 0.0]], [0], recall_at=(1, 2, 3))
    assert metrics["t2v_R1"] == pytest.approx(100 / 3)
    assert metrics["t2v_R2"] == pytest.approx(200 / 3)
    assert metrics["t2v_R3"] == pytest.approx(100.0)
    assert metrics["t2v_MnR"] == pytest.approx(2.0)
    # A collapsed model that scores everything alike is chance level, not perfect.
    collapsed = retrieval_metrics(np.zeros((20, 10)), np.repeat(np.arange(10), 2), recall_at=(1,))
    assert collapsed["t2v_R1"] == pytest.approx(10.0)
    assert collapsed["t2v_MnR"] == pytest.approx(5.5)
    # v2t: 2 correct + 18 wrong captions tied -> P(best correct first) = 2/20, expected rank 1 + 18/3.
    assert collapsed["v2t_R1"] == pytest.approx(10.0)
    assert collapsed["v2t_MnR"] == pytest.approx(7.0)


def test_video_without_caption_is_excluded_from_v2t_with_a_warning(caplog):
    similarity = np.array([[0.9, 0.6, 0.1], [0.2, 0.7, 0.95]])  # video 2 has no caption but is a strong distractor
    with caplog.at_level(logging.WARNING, logger="modeling_t2v2t.retrieval.metrics"):
        metrics = retrieval_metrics(similarity, [0, 1], recall_at=(1,))
    assert "1 of 3 videos have no caption" in caplog.text
    assert metrics["t2v_R1"] == pytest.approx(50.0)  # caption 1 loses to the caption-less video 2
    assert metrics["v2t_R1"] == pytest.approx(100.0)  # averaged over videos 0 and 1 only
    ranks = ranks_video_to_text(similarity, [0, 1])
    assert ranks[:2].tolist() == [1, 1] and math.isnan(ranks[2])


# ---------------------------------------------------------------- inputs and chunking


def test_chunking_and_input_types_give_the_same_result():
    similarity, text_to_video = random_case(11, num_videos=23, captions_per_video=2)
    reference = retrieval_metrics(similarity, text_to_video, chunk_size=10_000)
    for chunk_size in (1, 3, 7, 46):
        assert retrieval_metrics(similarity, text_to_video, chunk_size=chunk_size) == reference
        np.testing.assert_array_equal(
            ranks_video_to_text(similarity, text_to_video, chunk_size=chunk_size),
            ranks_video_to_text(similarity, text_to_video),
        )
    as_torch = retrieval_metrics(torch.from_numpy(similarity), torch.from_numpy(text_to_video), chunk_size=5)
    assert as_torch == reference
    assert retrieval_metrics(similarity.tolist(), text_to_video.tolist()) == reference
    assert retrieval_metrics(torch.from_numpy(similarity).float(), text_to_video) == retrieval_metrics(
        similarity.astype(np.float32), text_to_video
    )


def test_recall_at_keys_and_summary_values():
    similarity, text_to_video = random_case(5)
    metrics = retrieval_metrics(similarity, text_to_video, recall_at=(3,))
    assert list(metrics) == [
        "t2v_R3", "t2v_MdR", "t2v_MnR", "t2v_RSum", "v2t_R3", "v2t_MdR", "v2t_MnR", "v2t_RSum", "mean_recall",
    ]  # fmt: skip
    full = retrieval_metrics(similarity, text_to_video)
    assert metrics["t2v_RSum"] == full["t2v_RSum"] == full["t2v_R1"] + full["t2v_R5"] + full["t2v_R10"]
    six = [full[f"{d}_R{k}"] for d in ("t2v", "v2t") for k in (1, 5, 10)]
    assert full["mean_recall"] == pytest.approx(sum(six) / 6)
    assert all(0.0 <= full[f"t2v_R{k}"] <= 100.0 for k in RECALL_AT)
    assert full["t2v_R50"] == 100.0  # only 9 videos


@pytest.mark.parametrize(
    ("similarity", "text_to_video", "message"),
    [
        (np.zeros(3), [0, 1, 2], "must be 2-D"),
        (np.zeros((0, 3)), [], "at least one text and one video"),
        (np.zeros((3, 2)), [0, 1], r"shape \(3,\) to match similarity of shape \(3, 2\)"),
        (np.zeros((2, 2)), [[0], [1]], r"shape \(2,\)"),
        (np.zeros((2, 2)), [0.0, 1.0], "integer video indices"),
        (np.zeros((2, 2)), [0, 2], r"\[0, 2\).*text 1 has video index 2"),
        (np.zeros((2, 2)), [-1, 0], "text 0 has video index -1"),
        (np.array([[0.1, 0.2], [np.nan, 0.3]]), [0, 1], r"NaN \(first at text 1, video 0\)"),
    ],
)
def test_invalid_inputs_raise(similarity, text_to_video, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(similarity, text_to_video)


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="recall_at"):
        retrieval_metrics(np.eye(2), [0, 1], recall_at=(0,))
    with pytest.raises(ValueError, match="chunk_size"):
        ranks_text_to_video(np.eye(2), [0, 1], chunk_size=0)
    with pytest.raises(ValueError, match="NaN"):
        ranks_video_to_text(torch.tensor([[float("nan"), 0.0]]), [0])


# ---------------------------------------------------------------- table, docstrings, evaluate module


def test_format_metrics_table_contains_the_numbers():
    similarity, text_to_video = random_case(2)
    embedding = retrieval_metrics(similarity, text_to_video)
    reranked = retrieval_metrics(KNOWN_SIMILARITY, KNOWN_TARGETS)
    table = format_metrics_table({"embedding": embedding, "reranked": reranked}, digits=2)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run | t2v R@1 | t2v R@5 | t2v R@10 | t2v MdR | t2v MnR | v2t R@1")
    for line, (name, metrics) in zip(lines[2:], [("embedding", embedding), ("reranked", reranked)]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        keys = [f"{d}_{s}" for d in ("t2v", "v2t") for s in ("R1", "R5", "R10", "MdR", "MnR")]
        assert cells == [name] + [f"{metrics[key]:.2f}" for key in keys]
    assert "| 40.00 | 100.00 | 100.00 | 2.00 | 2.00 | 33.33 |" in table


def test_docstring_examples_run():
    results = doctest.testmod(retrieval_metrics_module)
    assert results.attempted >= 5 and results.failed == 0


@pytest.fixture(scope="module")
def retrieval_module():
    evaluate = pytest.importorskip("evaluate")
    return evaluate.load(str(METRIC_FOLDER))


def test_evaluate_module_matches_library(retrieval_module):
    similarity, text_to_video = random_case(9, num_videos=12, captions_per_video=2)
    expected = retrieval_metrics(similarity.astype(np.float32), text_to_video)
    assert retrieval_module.compute(predictions=similarity.tolist(), references=text_to_video.tolist()) == expected
    # Streamed in batches, with the options passed through.
    for start in range(0, len(similarity), 5):
        retrieval_module.add_batch(
            predictions=similarity[start : start + 5].tolist(), references=text_to_video[start : start + 5].tolist()
        )
    streamed = retrieval_module.compute(recall_at=(1, 5), chunk_size=4)
    assert streamed == retrieval_metrics(similarity.astype(np.float32), text_to_video, recall_at=(1, 5))


def test_evaluate_module_known_answer_and_errors(retrieval_module):
    results = retrieval_module.compute(predictions=KNOWN_SIMILARITY.tolist(), references=KNOWN_TARGETS)
    assert results["t2v_R1"] == pytest.approx(40.0) and results["v2t_MnR"] == pytest.approx(2.0)
    import evaluate

    # In memory: after a failed compute(), a file-backed module waits ~1 s on its cache lock.
    in_memory = evaluate.load(str(METRIC_FOLDER), keep_in_memory=True)
    with pytest.raises(ValueError, match="lengths"):
        in_memory.compute(predictions=[[0.1, 0.2], [0.3]], references=[0, 1])
    with pytest.raises(ValueError, match="video index"):
        in_memory.compute(predictions=[[0.1, 0.2], [0.3, 0.4]], references=[0, 5])


def test_separate_video_to_text_scores():
    generator = np.random.default_rng(1)
    t2v, v2t = generator.normal(size=(8, 4)), generator.normal(size=(8, 4))
    ids = [0, 0, 1, 1, 2, 2, 3, 3]
    combined = retrieval_metrics(t2v, ids, similarity_v2t=v2t)
    assert {k: v for k, v in combined.items() if k.startswith("t2v")} == {
        k: v for k, v in retrieval_metrics(t2v, ids).items() if k.startswith("t2v")}
    assert {k: v for k, v in combined.items() if k.startswith("v2t")} == {
        k: v for k, v in retrieval_metrics(v2t, ids).items() if k.startswith("v2t")}
    with pytest.raises(ValueError, match="similarity_v2t has shape"):
        retrieval_metrics(t2v, ids, similarity_v2t=v2t[:4])
