"""Checkpoint selection never sees training videos: the paper configs select only where the paper does, on a split
disjoint from training, and keep the last checkpoint otherwise; finetune.py warns when validation and training
share videos (training.data_setup.warn_shared_videos)."""

import json
import logging
from pathlib import Path

import datasets
import pytest
from transformers import TrainingArguments

from processing.batching import caption_pairs
from processing.builders import build_msrvtt
from training.arguments import DataArguments, ModelArguments, parse_arguments
from training.data_setup import shared_videos, warn_shared_videos

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
FIXTURES = Path(__file__).parent / "fixtures" / "annotations"


def gallery(videos: list[tuple[str, str]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"video": [path for path, _ in videos], "video_id": [vid for _, vid in videos],
                                       "captions": [["a caption"]] * len(videos),
                                       "media_type": ["video"] * len(videos)})


def test_overlap_is_found_by_path_or_by_id(caplog):
    train = caption_pairs(gallery([("/d/a.mp4", "a"), ("/d/b.mp4", "b"), ("/d/c.mp4", "c")]))
    by_path = gallery([("/d/b.mp4", "other-id"), ("/d/x.mp4", "x")])
    by_id = gallery([("/elsewhere/c.mp4", "c")])
    disjoint = gallery([("/d/y.mp4", "y")])
    assert shared_videos(train, by_path) == {"video": ["/d/b.mp4"], "video_id": []}
    assert shared_videos(train, by_id) == {"video": [], "video_id": ["c"]}
    with caplog.at_level(logging.WARNING, logger="training.data_setup"):
        assert warn_shared_videos(train, disjoint) == 0
        assert caplog.text == ""
        assert warn_shared_videos(train, by_path) == 1
    assert "shares 1 of its 2 videos with the training data" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="training.data_setup"):
        assert warn_shared_videos(train, by_id) == 1
        assert warn_shared_videos(train, None) == 0
        # Validation sharing videos with the test split is reported too (selection on test videos).
        assert warn_shared_videos(train, disjoint, test=gallery([("/d/y.mp4", "y")])) == 0
    assert "with the test data" in caplog.text


def test_msrvtt_validate_split_lies_inside_the_training_split(caplog, tmp_path):
    # MSR-VTT's official `validate` videos (video6513-7009) are part of the 7k (and 9k) training split.
    train, _ = build_msrvtt(tmp_path, "train_7k", annotation_dir=FIXTURES / "msrvtt", check_files=False)
    validate, _ = build_msrvtt(tmp_path, "validate", annotation_dir=FIXTURES / "msrvtt", check_files=False)
    with caplog.at_level(logging.WARNING, logger="training.data_setup"):
        assert warn_shared_videos(caption_pairs(train), validate) == len(validate) > 0
    assert "video6513" in caplog.text


def test_finetune_calls_the_overlap_check():
    source = (Path(__file__).resolve().parents[1] / "training" / "finetune.py").read_text()
    assert "warn_shared_videos(train_pairs, validation, test)" in source


@pytest.fixture
def load_config(tmp_path):
    def load(name: str):
        raw = json.loads((CONFIGS / f"{name}_finetune.json").read_text())
        cpu = tmp_path / f"{name}.json"  # parsed as written, except that this machine has no bf16 GPU
        cpu.write_text(json.dumps({**raw, "bf16": False, "use_cpu": True}))
        _, data, training = parse_arguments((ModelArguments, DataArguments, TrainingArguments), [str(cpu)])
        return raw, data, training
    return load


@pytest.mark.parametrize("name", ["msrvtt", "activitynet"])
def test_paper_configs_without_a_disjoint_split_keep_the_last_checkpoint(name, load_config):
    raw, data, training = load_config(name)
    assert data.validation_data is None
    assert training.eval_strategy == "no" and not training.load_best_model_at_end
    assert "LAST checkpoint" in raw["_comment"]


def test_msrvtt_config_follows_vindlus_7k_protocol(load_config):
    raw, data, _ = load_config("msrvtt")
    assert data.train_data[0]["split"] == "train_7k" and data.test_data["split"] == "test_1k_a"
    assert "train_9k" in raw["_comment"]  # the 9k variant is one split away


def test_didemo_config_selects_on_a_split_disjoint_from_training(load_config):
    _, data, training = load_config("didemo")
    assert training.load_best_model_at_end and training.metric_for_best_model == "mean_recall"
    files = {data.train_data[0]["annotation_file"], data.validation_data["annotation_file"],
             data.test_data["annotation_file"]}
    assert len(files) == 3 and data.validation_data["annotation_file"].endswith("val_data.json")


def test_activitynet_reports_val_1(load_config):
    _, data, _ = load_config("activitynet")
    assert data.test_data["annotation_file"].endswith("val_1.json")


@pytest.mark.slow
def test_finetune_without_validation_keeps_the_last_checkpoint(tmp_path):
    from test_training import run_config, write_config

    from training import finetune

    config = run_config(tmp_path, tmp_path / "bench", validation_data=None, eval_strategy="no",
                        load_best_model_at_end=False)
    trainer, test_metrics = finetune.main([write_config(tmp_path / "config.json", config)])
    assert not any("eval_mean_recall" in entry for entry in trainer.state.log_history)  # nothing selected
    assert trainer.state.best_model_checkpoint is None and trainer.state.global_step > 0
    assert "test_embedding_t2v_R1" in test_metrics  # the last checkpoint is reported on the test split
