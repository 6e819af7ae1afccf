"""Crash-safe resume (issue 13, point 4): `--resume_from_checkpoint true` resumes from the newest COMPLETE
checkpoint and logs every incomplete one it passes over, e.g. the folder a kill during a save leaves behind."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from broken_media import write_small_video
from safetensors.torch import save_file
from tiny_models import TINY_MODEL
from transformers import Trainer

from training import finetune
from training.checkpoints import checkpoint_problem, newest_complete_checkpoint, resolve_resume_checkpoint



def _checkpoint(folder: Path, step: int, state: str | None = "ok", weights: str = "ok") -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if weights != "none":
        save_file({"weight": torch.zeros(256)}, path / "model.safetensors")
        if weights == "truncated":
            data = (path / "model.safetensors").read_bytes()
            (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    if state == "ok":
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    elif state == "half":
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step})[:8])
    return path


def test_newest_complete_checkpoint_passes_over_incomplete_ones_and_logs_them(tmp_path, caplog):
    complete = _checkpoint(tmp_path, 5)
    _checkpoint(tmp_path, 3)  # older, complete
    no_state = _checkpoint(tmp_path, 10, state=None)  # killed after the weights, before trainer_state.json
    half_state = _checkpoint(tmp_path, 15, state="half")  # killed while writing trainer_state.json
    cut_weights = _checkpoint(tmp_path, 20, weights="truncated")
    no_weights = _checkpoint(tmp_path, 25, weights="none", state=None)  # killed right after mkdir
    (tmp_path / "checkpoint-30-tmp").mkdir()  # not a checkpoint name
    with caplog.at_level(logging.WARNING, logger="training.checkpoints"):
        assert newest_complete_checkpoint(tmp_path) == str(complete)
    for folder, reason in [(no_state, "no trainer_state.json"), (half_state, "trainer_state.json is not readable JSON"),
                           (cut_weights, "model.safetensors is damaged"), (no_weights, "no trainer_state.json")]:
        assert f"incomplete checkpoint {folder}: {reason}" in caplog.text
    assert checkpoint_problem(complete) is None
    assert "checkpoint-3" not in caplog.text  # not looked at: a newer complete one was found


def test_resume_true_without_a_complete_checkpoint_says_so(tmp_path):
    _checkpoint(tmp_path, 4, state=None)
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        resolve_resume_checkpoint("true", tmp_path)
    assert resolve_resume_checkpoint(None, tmp_path) is None
    assert resolve_resume_checkpoint("some/path", tmp_path) == "some/path"


class _Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way up handles it."""


@pytest.mark.slow
def test_a_run_killed_during_a_save_resumes_from_the_last_complete_checkpoint(tmp_path, monkeypatch, caplog):
    root = tmp_path / "media"
    root.mkdir()
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "square", "circle", "moves", "left", "right"]
    entries = [{"video": write_small_video(root / f"clip{i}.mp4", num_frames=6 + i % 3).name,
                "caption": " ".join(rng.choice(words, size=4))} for i in range(8)]
    (root / "train.json").write_text(json.dumps(entries))
    config = {
        "model_config": TINY_MODEL, "num_frames": 2, "max_length": 16,
        "train_data": [{"builder": "vindlu_json", "annotation_file": str(root / "train.json"),
                        "video_root": str(root), "split": "train"}],
        "validation_data": None, "test_data": None, "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 4, "max_steps": 6, "save_strategy": "steps", "save_steps": 2,
        "eval_strategy": "no", "learning_rate": 1e-3, "use_cpu": True, "report_to": "none", "disable_tqdm": True,
        "seed": 0,
    }
    first = tmp_path / "first.json"
    first.write_text(json.dumps(config))

    # The first run dies while saving checkpoint-4: after its weights and optimizer, before trainer_state.json.
    save_rng_state = Trainer._save_rng_state

    def killed_at_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise _Killed
        return save_rng_state(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", killed_at_step_4)
    with pytest.raises(_Killed):
        finetune.main([str(first)])
    run = tmp_path / "run"
    assert (run / "checkpoint-4" / "model.safetensors").is_file()
    assert not (run / "checkpoint-4" / "trainer_state.json").exists()
    assert checkpoint_problem(run / "checkpoint-2") is None
    monkeypatch.setattr(Trainer, "_save_rng_state", save_rng_state)

    resume = tmp_path / "resume.json"
    resume.write_text(json.dumps({**config, "resume_from_checkpoint": "true"}))
    with caplog.at_level(logging.INFO):
        trainer, _ = finetune.main([str(resume)])
    assert f"Passing over the incomplete checkpoint {run / 'checkpoint-4'}: no trainer_state.json" in caplog.text
    assert f"Resuming from {run / 'checkpoint-2'}" in caplog.text
    assert "Resuming training from checkpoint with epoch 1 and global step 2" in caplog.text  # Trainer's line
    assert trainer.state.global_step == 6
    assert json.loads((run / "checkpoint-6" / "trainer_state.json").read_text())["global_step"] == 6
    assert checkpoint_problem(run / "checkpoint-4") is None  # saved again, whole, by the resumed run
