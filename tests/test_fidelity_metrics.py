"""Both multi-caption video→text conventions (modeling_t2v2t.retrieval.metrics): ours ("best_caption", VindLU's
itm_eval) and the per-video one of CLIP4Clip's multi-sentence evaluation and X-Pool's v2t_metrics (each video's
captions max-pooled into one candidate, ranked among the videos), checked against straightforward implementations;
and the evaluation output names the convention behind its numbers."""

import json

import numpy as np
import pytest
import torch
from test_evaluate_retrieval_script import checkpoint  # noqa: F401  (fixture)

from modeling_t2v2t.retrieval.evaluation import metric_conventions
from modeling_t2v2t.retrieval.metrics import V2T_CONVENTIONS, ranks_video_to_text, retrieval_metrics
from training import evaluate_retrieval


def per_video_ranks_by_padding(similarity: np.ndarray, text_to_video: list[int]) -> np.ndarray:
    """CLIP4Clip's / X-Pool's layout written out: a (videos, max captions, videos) tensor padded with -inf, the max
    over captions, transposed so row v holds every video's best caption score against video v; the rank of the
    diagonal entry in its row (1-based; random float scores, so no ties)."""
    num_videos = similarity.shape[1]
    groups = [[i for i, v in enumerate(text_to_video) if v == video] for video in range(num_videos)]
    stacked = np.full((num_videos, max(len(g) for g in groups), num_videos), -np.inf)
    for video, captions in enumerate(groups):
        stacked[video, :len(captions)] = similarity[captions]
    pooled = stacked.max(axis=1).T  # [query video v, candidate video g]
    order = np.argsort(-pooled, axis=1)
    return np.array([int(np.where(order[v] == v)[0][0]) + 1 for v in range(num_videos)], dtype=float)


def best_caption_ranks_by_sorting(similarity: np.ndarray, text_to_video: list[int]) -> np.ndarray:
    """VindLU's itm_eval: sort all captions for a video, the first of its own captions gives the rank."""
    ranks = []
    for video in range(similarity.shape[1]):
        order = np.argsort(-similarity[:, video])
        ranks.append(min(int(np.where(order == caption)[0][0]) for caption, v in enumerate(text_to_video)
                         if v == video) + 1)
    return np.array(ranks, dtype=float)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_video_convention_matches_a_straightforward_implementation(seed):
    generator = np.random.default_rng(seed)
    num_videos = 30
    text_to_video = sorted(list(range(num_videos)) + list(generator.integers(0, num_videos, 50)))  # 1 to ~6 each
    # Correlated scores so that ranks spread over 1..30 rather than all being 1 or all random.
    similarity = generator.normal(size=(len(text_to_video), num_videos))
    similarity[np.arange(len(text_to_video)), text_to_video] += 1.5

    per_video = ranks_video_to_text(similarity, text_to_video, v2t_convention="per_video", chunk_size=7)
    expected = per_video_ranks_by_padding(similarity, text_to_video)
    np.testing.assert_array_equal(per_video, expected)
    best_caption = ranks_video_to_text(similarity, text_to_video, chunk_size=7)
    np.testing.assert_array_equal(best_caption, best_caption_ranks_by_sorting(similarity, text_to_video))

    metrics = retrieval_metrics(similarity, text_to_video, v2t_convention="per_video", chunk_size=7)
    for k in (1, 5, 10):
        assert metrics[f"v2t_R{k}"] == pytest.approx(100 * np.mean(expected <= k))
    assert metrics["v2t_MdR"] == np.median(expected) and metrics["v2t_MnR"] == pytest.approx(expected.mean())
    # R@1 agrees between the conventions; the ranks beyond do not (captions vs videos as candidates).
    ours = retrieval_metrics(similarity, text_to_video, chunk_size=7)
    assert ours["v2t_R1"] == pytest.approx(metrics["v2t_R1"])
    assert ours["t2v_R1"] == metrics["t2v_R1"]
    assert (best_caption >= per_video).all() and (best_caption > per_video).any()


def test_conventions_by_hand():
    # Video 0 has captions 0, 1; video 1 has caption 2; video 2 has caption 3. Query video 0's column:
    similarity = torch.tensor([[0.5, 0.0, 0.0],
                               [0.4, 0.0, 0.0],
                               [0.9, 0.0, 0.0],
                               [0.8, 0.0, 0.0]])
    # best_caption: captions ranked 0.9 (v1), 0.8 (v2), 0.5 (own) -> rank 3.
    # per_video: candidates v0 = max(0.5, 0.4) = 0.5, v1 = 0.9, v2 = 0.8 -> rank 3 of 3 videos as well; with a
    # fourth caption of video 1 at 0.85, best_caption drops to 4 while per_video stays 3.
    assert ranks_video_to_text(similarity, [0, 0, 1, 2])[0] == 3.0
    assert ranks_video_to_text(similarity, [0, 0, 1, 2], v2t_convention="per_video")[0] == 3.0
    more = torch.cat([similarity, torch.tensor([[0.85, 0.0, 0.0]])])
    assert ranks_video_to_text(more, [0, 0, 1, 2, 1])[0] == 4.0
    assert ranks_video_to_text(more, [0, 0, 1, 2, 1], v2t_convention="per_video")[0] == 3.0
    with pytest.raises(ValueError, match="v2t_convention='clip4clip' is unknown"):
        retrieval_metrics(similarity, [0, 0, 1, 2], v2t_convention="clip4clip")


def test_per_video_ties_count_as_expected_rank():
    # Every pooled score ties: expected rank (1 + #videos) / 2, as for the default convention.
    similarity = torch.zeros(4, 3)
    ranks = ranks_video_to_text(similarity, [0, 0, 1, 2], v2t_convention="per_video")
    assert ranks.tolist() == [2.0, 2.0, 2.0]


def test_evaluation_output_names_the_convention_of_each_number(checkpoint, tmp_path):  # noqa: F811
    dataset_kwargs = {"split": "test", "out_dir": str(tmp_path / "bench"), "num_videos": 8, "workers": 1,
                      "progress": False}
    report = evaluate_retrieval.main(["--model_name_or_path", str(checkpoint), "--dataset", "synthetic",
                                      "--dataset_kwargs", json.dumps(dataset_kwargs), "--k", "0",
                                      "--v2t_convention", "per_video", "--output_file", str(tmp_path / "o.json")])
    written = json.loads((tmp_path / "o.json").read_text())
    assert written["metric_conventions"] == metric_conventions("per_video")
    assert written["metric_conventions"]["v2t"].startswith("per_video: ")
    assert "best_caption" in metric_conventions()["v2t"] and set(V2T_CONVENTIONS) == {"best_caption", "per_video"}
    assert report["metrics"]["embedding"]["v2t_R1"] >= 0
    with pytest.raises(ValueError, match="--v2t_convention must be one of"):
        evaluate_retrieval.main(["--model_name_or_path", str(checkpoint), "--dataset", "synthetic", "--v2t_convention",
                                 "mean"])


def test_evaluate_metric_module_passes_the_convention_through():
    evaluate = pytest.importorskip("evaluate")
    from test_retrieval_metrics import METRIC_FOLDER

    metric = evaluate.load(str(METRIC_FOLDER))
    rows = [[0.5, 0.0, 0.0], [0.4, 0.0, 0.0], [0.9, 0.0, 0.0], [0.8, 0.0, 0.0], [0.85, 0.0, 0.0]]
    ours = metric.compute(predictions=rows, references=[0, 0, 1, 2, 1], recall_at=(3,))
    per_video = metric.compute(predictions=rows, references=[0, 0, 1, 2, 1], recall_at=(3,),
                               v2t_convention="per_video")
    # Video 0 ranks 4th among captions (best_caption) but 3rd among videos (per_video), as in test_conventions_by_hand.
    assert ours["v2t_MnR"] != per_video["v2t_MnR"]
