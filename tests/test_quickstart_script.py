"""The main job's script (`training/quickstart.py`) end to end on a tiny config: train, evaluate, save, reload as
Hub custom code and answer a query; `--steps` replaces the config's step counts, and a time budget cuts them."""

import json
from pathlib import Path

import pytest
from tiny_models import TINY_MODEL

from training import quickstart


def tiny_quickstart_config(tmp_path, steps: int) -> tuple[Path, dict]:
    """A quickstart config for the tiny model on an 8-video benchmark, validated and saved at step `steps`."""
    synthetic = {"builder": "synthetic", "out_dir": str(tmp_path / "bench"), "num_videos": 8, "seed": 0, "workers": 1,
                 "progress": False}
    config = {
        "model_config": TINY_MODEL, "num_frames": 2, "max_length": 24,
        "train_data": [{**synthetic, "split": "train"}], "validation_data": {**synthetic, "split": "val"},
        "test_data": {**synthetic, "split": "test"}, "k_test": 2, "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8, "learning_rate": 1e-3,
        "max_steps": steps, "eval_strategy": "steps", "eval_steps": steps, "save_strategy": "steps",
        "save_steps": steps, "load_best_model_at_end": True, "use_cpu": True, "report_to": "none",
        "disable_tqdm": True, "seed": 0,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path, config


@pytest.mark.slow
def test_quickstart_runs_end_to_end_and_steps_override_the_config(tmp_path, capsys):
    path, config = tiny_quickstart_config(tmp_path, steps=1)
    quickstart.main(["--config", str(path), "--steps", "3", "--query", "a small red circle moves left"])

    run = Path(config["output_dir"])
    saved = json.loads((run / "training_config.json").read_text())
    assert (saved["max_steps"], saved["eval_steps"], saved["save_steps"]) == (3, 3, 3)
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 3
    assert (run / "checkpoint-3").is_dir() and not (run / "checkpoint-1").exists()
    printed = capsys.readouterr().out
    assert "Query: 'a small red circle moves left'" in printed
    assert "Text->video R@1 on" in printed and "Hub-ready model:" in printed


def test_steps_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        quickstart.main(["--steps", "0"])
    assert "--steps must be a positive number of training steps, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_the_quickstart_trains_the_steps_its_budget_allows(tmp_path, capsys):
    path, config = tiny_quickstart_config(tmp_path, steps=40)
    # A budget that rendering and set-up use up (0.12 s): the run keeps its two least steps, then evaluates and saves
    # its last one as the config would have saved step 40 (training/time_budget.py).
    quickstart.main(["--config", str(path), "--time_budget_minutes", "0.002"])
    run = Path(config["output_dir"])
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 2
    results = json.loads((run / "train_results.json").read_text())
    assert (results["train_steps"], results["train_configured_steps"]) == (2, 40)
    assert (run / "checkpoint-2").is_dir()
    assert json.loads((run / "training_config.json").read_text())["max_train_minutes"] < 0.002
    printed = capsys.readouterr().out
    assert "Trained 2 of the config's 40 steps" in printed and "Text->video R@1 on" in printed
