"""Training with the plain Trainer: fine-tuning selects on validation and saves a Hub folder; pretraining mixes
image and video batches; 2 processes under accelerate match 1 process; a run killed with SIGKILL resumes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import TINY_MODEL
from transformers import AutoModel

from processing.batching import MediaTypeBatchSampler
from training import finetune
from training.data_setup import build_split

ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent





def run_config(tmp_path: Path, bench: Path, **overrides) -> dict:
    synthetic = {"builder": "synthetic", "out_dir": str(bench), "num_videos": 8, "seed": 0, "workers": 1,
                 "progress": False}
    config = {
        "model_config": TINY_MODEL, "num_frames": 2, "max_length": 24,
        "train_data": [{**synthetic, "split": "train"}], "validation_data": {**synthetic, "split": "val"},
        "test_data": {**synthetic, "split": "test"}, "k_test": 2,
        "output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
        "num_train_epochs": 2, "learning_rate": 1e-3, "eval_strategy": "epoch", "save_strategy": "epoch",
        "load_best_model_at_end": True, "logging_steps": 1, "use_cpu": True, "report_to": "none",
        "disable_tqdm": True, "seed": 0,
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> str:
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


@pytest.mark.slow
def test_finetune_selects_on_validation_and_saves_a_hub_folder(tmp_path, bench, capsys):
    config = run_config(tmp_path, bench)
    trainer, test_metrics = finetune.main([write_config(tmp_path / "config.json", config)])
    assert "v2t: best_caption" in capsys.readouterr().out  # the test table says which v2t convention it uses
    evaluations = [entry for entry in trainer.state.log_history if "eval_mean_recall" in entry]
    assert len(evaluations) == 2  # one per epoch, on the validation split
    assert trainer.args.metric_for_best_model == "mean_recall"
    assert trainer.state.best_metric == max(entry["eval_mean_recall"] for entry in evaluations)
    assert trainer.state.best_model_checkpoint is not None
    assert (Path(trainer.state.best_model_checkpoint) / "model.safetensors").exists()
    assert "test_reranked_t2v_R1" in test_metrics and "test_embedding_t2v_R1" in test_metrics
    # Selection never saw the test split: every selection-time evaluation scored the validation gallery, and the
    # test gallery was scored exactly once, after training (the last log entry).
    validation_videos, test_videos = (len(build_split(config[name])) for name in ("validation_data", "test_data"))
    assert validation_videos != test_videos  # else the gallery size below could not tell the splits apart
    assert all(entry["eval_num_videos"] == validation_videos for entry in evaluations)
    test_entries = [index for index, entry in enumerate(trainer.state.log_history) if "test_mean_recall" in entry]
    assert test_entries == [len(trainer.state.log_history) - 1]
    assert trainer.state.log_history[-1]["test_num_videos"] == test_videos
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["auto_map"]["AutoModel"] == "modeling_t2v2t.T2V2TModel"
    assert json.loads((tmp_path / "run" / "training_config.json").read_text()) == config  # the run's config
    reloaded = AutoModel.from_pretrained(tmp_path / "run")
    for name, parameter in reloaded.named_parameters():  # the saved model is the best checkpoint
        assert torch.equal(parameter, trainer.model.state_dict()[name]), name


# X-Pool and CRET on the same tiny towers: "model_type" in the model config picks the model.
BASELINE_FIELDS = {
    "xpool": {"model_type": "xpool"},
    "cret": {"model_type": "cret", "num_centers": 2, "ccm_num_layers": 1, "ccm_num_attention_heads": 2},
}
BASELINE_CLASSES = {"xpool": "XPoolModel", "cret": "CRETModel"}


def check_baseline_run(trainer, run: Path, model_class: str) -> None:
    """Finite training losses, embedding-only validation metrics (no joint encoder, so no reranking), and a saved
    Hub folder that reloads to the trained weights."""
    assert type(trainer.model).__name__ == model_class
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(np.isfinite(losses))
    evaluations = [entry for entry in trainer.state.log_history if "eval_mean_recall" in entry]
    assert evaluations and all(np.isfinite(entry["eval_embedding_t2v_R1"]) for entry in evaluations)
    assert not any(key.startswith("eval_reranked_") for entry in evaluations for key in entry)
    saved = json.loads((run / "config.json").read_text())
    assert saved["auto_map"]["AutoModel"].endswith("." + model_class)
    reloaded = AutoModel.from_pretrained(run)
    assert type(reloaded).__name__ == model_class
    for name, parameter in reloaded.named_parameters():
        assert torch.equal(parameter, trainer.model.state_dict()[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["xpool", "cret"])
def test_finetune_trains_and_evaluates_the_baselines_from_scratch(tmp_path, bench, model_type):
    model_config = {key: value for key, value in TINY_MODEL.items() if key != "fusion_layer"}  # a T2V2T field
    model_config.update(BASELINE_FIELDS[model_type])
    config = run_config(tmp_path, bench, model_config=model_config, num_train_epochs=1)
    trainer, test_metrics = finetune.main([write_config(tmp_path / "config.json", config)])
    check_baseline_run(trainer, tmp_path / "run", BASELINE_CLASSES[model_type])
    assert np.isfinite(test_metrics["test_embedding_t2v_R1"]) and np.isfinite(test_metrics["test_mean_recall"])
    assert not any(key.startswith("test_reranked_") for key in test_metrics)


@pytest.mark.slow
def test_finetune_xpool_from_a_clip_checkpoint(tmp_path, bench):
    from test_xpool import save_tiny_clip

    save_tiny_clip(tmp_path / "clip")
    config = run_config(tmp_path, bench, num_train_epochs=1, test_data=None)
    del config["model_config"]
    config["clip_model_name_or_path"] = str(tmp_path / "clip")
    trainer, _ = finetune.main([write_config(tmp_path / "config.json", config)])
    assert trainer.model.config.backbone == "clip"
    check_baseline_run(trainer, tmp_path / "run", "XPoolModel")


@pytest.mark.slow
def test_pretraining_mixes_image_and_video_batches(tmp_path, bench):
    images = tmp_path / "cc3m" / "00000"
    images.mkdir(parents=True)
    for index, (colour, name) in enumerate([((255, 0, 0), "red"), ((0, 0, 255), "blue"), ((0, 255, 0), "green")]):
        Image.fromarray(np.full((40, 40, 3), colour, dtype=np.uint8)).save(images / f"00000{index:04d}.jpg")
        (images / f"00000{index:04d}.txt").write_text(f"a {name} square")
    config = run_config(tmp_path, bench, test_data=None, num_train_epochs=1, per_device_train_batch_size=4,
                        eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    config["train_data"].append({"builder": "cc3m", "video_root": str(tmp_path / "cc3m")})
    trainer, _ = finetune.main([write_config(tmp_path / "config.json", config)], pretraining=True)
    assert type(trainer.model).__name__ == "T2V2TForPreTraining"
    assert isinstance(trainer.train_batch_sampler, MediaTypeBatchSampler)
    media = list(trainer.train_dataset["media_type"])
    batches = list(trainer.train_batch_sampler)
    assert all(len({media[i] for i in batch}) == 1 for batch in batches)  # never mixed inside a batch
    assert {media[batch[0]] for batch in batches} == {"image", "video"}  # both kinds are trained on
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == len(batches) and all(np.isfinite(losses))


def test_media_type_batch_sampler_covers_everything_once_per_epoch():
    sampler = MediaTypeBatchSampler(["video"] * 7 + ["image"] * 5, batch_size=3, seed=1)
    first = list(sampler)
    assert sorted(i for batch in first for i in batch) == list(range(12)) and len(first) == len(sampler) == 5
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert len(MediaTypeBatchSampler(["video"] * 7, batch_size=3, drop_last=True)) == 2


ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def _rank_errors(stderr: str) -> str:
    """The last 25 lines each rank printed with its `[rankN]:` prefix (its own traceback), then the launcher's tail:
    the tail alone shows only the surviving rank's error, not the crash that caused it."""
    by_rank: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        if line.startswith("[rank"):
            by_rank.setdefault(line.split("]", 1)[0], []).append(line)
    tracebacks = "\n".join(line for lines in by_rank.values() for line in lines[-25:])
    return f"{tracebacks}\n--- launcher ---\n{stderr[-1500:]}"


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path, bench):
    """The same global batch of 8 pairs: 1 process x 8 vs 2 processes x 4 (gloo). VTC gathers negatives across
    processes, so the logged loss (not doubled) and the weights after one SGD step are the same."""
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    script = str(TESTS / "distributed_train_step.py")
    single = subprocess.run([sys.executable, script, str(tmp_path), str(bench), "8"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    double = subprocess.run(ACCELERATE + [script, str(tmp_path), str(bench), "4"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, _rank_errors(double.stderr)
    one = json.loads((tmp_path / "result_1.json").read_text())
    two = json.loads((tmp_path / "result_2.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    for name, weights in one["weights"].items():
        np.testing.assert_allclose(two["weights"][name], weights, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, bench):
    config = run_config(tmp_path, bench, max_steps=40, save_steps=5, save_strategy="steps", eval_strategy="no",
                        load_best_model_at_end=False, test_data=None, per_device_train_batch_size=2,
                        save_total_limit=None)
    command = [sys.executable, str(ROOT / "training" / "finetune.py")]
    process = subprocess.Popen(command + [write_config(tmp_path / "first.json", config)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first_checkpoint = tmp_path / "run" / "checkpoint-5" / "trainer_state.json"
    deadline = time.time() + 240
    while not first_checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first_checkpoint.exists(), process.stderr.read().decode()[-3000:] if process.poll() is not None else ""
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "checkpoint-40").exists()  # it really died mid-training
    killed_at = max(int(path.name.split("-")[1]) for path in (tmp_path / "run").glob("checkpoint-*"))

    resumed = subprocess.run(command + [write_config(tmp_path / "resume.json",
                                                     {**config, "resume_from_checkpoint": "true"})],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"and global step {killed_at}" in resumed.stderr + resumed.stdout  # "Resuming training from checkpoint"
    state = json.loads((tmp_path / "run" / "checkpoint-40" / "trainer_state.json").read_text())
    assert state["global_step"] == 40
    assert (tmp_path / "run" / "checkpoint-40" / "model.safetensors").exists()
    model = AutoModel.from_pretrained(tmp_path / "run")
    assert type(model).__name__ == "T2V2TModel"
    shutil.rmtree(tmp_path / "run")


@pytest.mark.parametrize("config", sorted((ROOT / "training" / "configs").glob("*.json")), ids=lambda p: p.name)
def test_shipped_configs_parse(config, tmp_path):
    from transformers import TrainingArguments

    from training.arguments import ModelArguments, parse_arguments
    from training.arguments import DataArguments

    values = json.loads(config.read_text())
    if not torch.cuda.is_available():
        values["use_cpu"] = True  # the paper configs ask for bf16, which TrainingArguments allows on CPU only so
    (tmp_path / config.name).write_text(json.dumps(values))
    model_args, data_args, training_args = parse_arguments((ModelArguments, DataArguments, TrainingArguments),
                                                           [str(tmp_path / config.name)])
    assert data_args.train_data and training_args.output_dir
    if data_args.validation_data is not None:
        assert training_args.metric_for_best_model == "mean_recall"
        assert data_args.validation_data != data_args.test_data  # never select on the reported split
