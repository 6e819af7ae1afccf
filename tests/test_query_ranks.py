"""Per-query ranks: `evaluate_two_stage(query_ranks=True)` keeps the ranks its metrics count, and
`RetrievalTrainer.evaluate(save_ranks=True)` writes them as OUTPUT_DIR/{prefix}_ranks.json, whose R@1 is the
reported one, with a hash of the caption order for pairing runs."""

import json

import datasets
import numpy as np
import pytest
from tiny_models import tiny_gallery as shared_tiny_gallery
from transformers import TrainingArguments

from modeling_t2v2t.retrieval.evaluation import evaluate_two_stage
from modeling_t2v2t.retrieval.metrics import ranks_text_to_video, ranks_video_to_text
from modeling_t2v2t.retrieval.query_ranks import caption_order_hash, ranks_record, record_ranks
from training.retrieval_trainer import RetrievalTrainer

NUM_VIDEOS, CAPTIONS_PER_VIDEO = 6, 2


def tiny_gallery(fusion_mode: str = "t2v2t"):
    model, _, text_batches, videos, text_to_video = shared_tiny_gallery(NUM_VIDEOS, CAPTIONS_PER_VIDEO, fusion_mode)
    return model, text_batches, [videos[:4], videos[4:]], text_to_video


def test_two_stage_keeps_the_ranks_its_metrics_count():
    model, texts, videos, text_to_video = tiny_gallery()
    result = evaluate_two_stage(model, texts, videos, text_to_video, NUM_VIDEOS, k=3, progress=False,
                                token_dtype=np.float32, query_ranks=True)
    assert set(result.ranks) == {"embedding", "reranked"}
    np.testing.assert_array_equal(result.ranks["embedding"]["t2v"], ranks_text_to_video(result.similarity,
                                                                                         text_to_video))
    np.testing.assert_array_equal(result.ranks["reranked"]["v2t"], ranks_video_to_text(result.v2t_scores,
                                                                                        text_to_video))
    for stage, ranks in result.ranks.items():
        assert ranks["t2v"].shape == (NUM_VIDEOS * CAPTIONS_PER_VIDEO,) and ranks["v2t"].shape == (NUM_VIDEOS,)
        for direction in ("t2v", "v2t"):
            assert 100 * np.mean(ranks[direction] <= 1) == pytest.approx(result.metrics[stage][f"{direction}_R1"])
            assert 100 * np.mean(ranks[direction] <= 5) == pytest.approx(result.metrics[stage][f"{direction}_R5"])
    assert evaluate_two_stage(model, texts, videos, text_to_video, NUM_VIDEOS, k=3, progress=False).ranks == {}


@pytest.mark.parametrize("fusion_mode", ["t2v2t", "none"])
def test_trainer_writes_test_ranks_whose_r1_is_the_reported_one(tmp_path, fusion_mode):
    model, texts, videos, text_to_video = tiny_gallery(fusion_mode)
    gallery = datasets.Dataset.from_dict({
        "video_id": [f"video{v}" for v in range(NUM_VIDEOS)],
        "captions": [[f"caption {v}.{c}" for c in range(CAPTIONS_PER_VIDEO)] for v in range(NUM_VIDEOS)]})
    args = TrainingArguments(output_dir=str(tmp_path / "run"), use_cpu=True, report_to="none", disable_tqdm=True)
    trainer = RetrievalTrainer(model=model, args=args, k_test=3,
                               retrieval_loaders=lambda dataset: (texts, videos, text_to_video, NUM_VIDEOS))
    metrics = trainer.evaluate(gallery, metric_key_prefix="test", save_ranks=True)
    record = json.loads((tmp_path / "run" / "test_ranks.json").read_text())
    stages = ["embedding", "reranked"] if fusion_mode == "t2v2t" else ["embedding"]
    assert sorted(record["ranks"]) == stages
    assert record["num_videos"] == NUM_VIDEOS and record["num_captions"] == NUM_VIDEOS * CAPTIONS_PER_VIDEO
    assert record["caption_video_ids"] == [f"video{v}" for v in text_to_video.tolist()]
    assert record["v2t_convention"] == "best_caption"
    for stage in stages:
        for direction in ("t2v", "v2t"):
            ranks = record_ranks(record, stage, direction)
            assert 100 * np.mean(ranks <= 1) == pytest.approx(metrics[f"test_{stage}_{direction}_R1"])
            assert np.mean(ranks) == pytest.approx(metrics[f"test_{stage}_{direction}_MnR"])
    trainer.evaluate(gallery, metric_key_prefix="eval")  # selection-time evaluations write nothing
    assert not (tmp_path / "run" / "eval_ranks.json").exists()


def test_the_caption_order_hash_tells_different_queries_apart():
    ids, captions = ["a", "a", "b"], ["red", "blue", "green"]
    base = caption_order_hash([0, 0, 1], ids, captions)
    assert base == caption_order_hash([0, 0, 1], ids, captions)
    assert base != caption_order_hash([0, 0, 1], ids, ["blue", "red", "green"])  # same videos, captions swapped
    assert base != caption_order_hash([0, 0, 1])  # without ids: only the gallery's shape
    ranks = {"embedding": {"t2v": np.array([1.0, 2.5, 3.0]), "v2t": np.array([1.0, np.nan])}}
    record = json.loads(json.dumps(ranks_record(ranks, [0, 0, 1], num_videos=2)))  # survives strict JSON
    assert record["ranks"]["embedding"] == {"t2v": [1, 2.5, 3], "v2t": [1, None]}
    np.testing.assert_array_equal(record_ranks(record, "embedding", "v2t"), [1.0, np.nan])
    with pytest.raises(KeyError, match="no 'reranked' ranks"):
        record_ranks(record, "reranked", "t2v")
