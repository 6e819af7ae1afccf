"""`--cpu_bf16_needs_amx`: bf16 autocast on CPU only where the CPU has AMX tiles, float32 elsewhere, said in the log."""

import json
import logging
from pathlib import Path

import pytest
from transformers import TrainingArguments

from training import cpu_precision
from training.arguments import ModelArguments

ROOT = Path(__file__).resolve().parents[1]


def cpu_args(tmp_path, bf16=True) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, bf16=bf16, report_to="none")


@pytest.mark.parametrize("amx,expected_bf16,expected_log", [
    (False, False, "Training in float32, not bf16"),
    (True, True, "Training in bf16 autocast"),
    (None, True, "cannot tell whether the CPU has AMX"),
])
def test_bf16_is_kept_only_where_the_cpu_has_amx(tmp_path, monkeypatch, caplog, amx, expected_bf16, expected_log):
    monkeypatch.setattr(cpu_precision, "cpu_has_amx", lambda: amx)
    args = cpu_args(tmp_path)
    assert (args.bf16, args.mixed_precision) == (True, "bf16")
    with caplog.at_level(logging.INFO, logger="training.cpu_precision"):
        cpu_precision.apply_cpu_bf16_policy(args, needs_amx=True)
    # The Trainer's accelerator reads mixed_precision, the autocast contexts read bf16: both must agree.
    assert (args.bf16, args.mixed_precision) == (expected_bf16, "bf16" if expected_bf16 else "no")
    assert expected_log in caplog.text


def test_without_the_flag_bf16_is_taken_as_given(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(cpu_precision, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(cpu_precision, "cpu_has_native_bf16", lambda: False)
    args = cpu_args(tmp_path)
    with caplog.at_level(logging.INFO, logger="training.cpu_precision"):
        cpu_precision.apply_cpu_bf16_policy(args, needs_amx=False)
    assert args.bf16 and args.mixed_precision == "bf16"
    assert "emulated" in caplog.text  # the old warning for CPUs without any native bf16


def test_a_float32_run_is_left_alone(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(cpu_precision, "cpu_has_amx", lambda: False)
    args = cpu_args(tmp_path, bf16=False)
    with caplog.at_level(logging.INFO, logger="training.cpu_precision"):
        cpu_precision.apply_cpu_bf16_policy(args, needs_amx=True)
    assert not args.bf16 and args.mixed_precision == "no"
    assert not [record for record in caplog.records if record.name == "training.cpu_precision"]


@pytest.mark.parametrize("amx,expected", [(False, "float32"), (True, "bf16")])
def test_the_precision_recorded_is_the_one_trained_in(tmp_path, monkeypatch, amx, expected):
    monkeypatch.setattr(cpu_precision, "cpu_has_amx", lambda: amx)
    args = cpu_args(tmp_path)
    cpu_precision.apply_cpu_bf16_policy(args, needs_amx=True)
    assert cpu_precision.training_precision(args) == expected
    assert cpu_precision.training_precision(cpu_args(tmp_path, bf16=False)) == "float32"


def test_the_quickstart_asks_for_it():
    config = json.loads((ROOT / "training" / "configs" / "synthetic_quickstart.json").read_text())
    assert config["bf16"] is True and config["cpu_bf16_needs_amx"] is True
    assert ModelArguments(model_config={"fusion_mode": "t2v2t"}, cpu_bf16_needs_amx=True).cpu_bf16_needs_amx
