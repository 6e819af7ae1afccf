"""A training run's wall-clock limit (`training/time_budget.py`): the steps that fit, the learning-rate schedule that
follows a new run length, and the callback's plans on a simulated clock (the quickstart's budget end to end:
tests/test_quickstart_script.py)."""

import logging
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerState, TrainingArguments
from transformers.optimization import get_cosine_schedule_with_warmup, get_scheduler
from transformers.trainer_callback import ProgressCallback, TrainerControl

from training import quickstart, time_budget
from training.arguments import ModelArguments
from training.time_budget import TrainingDeadlineCallback, follow_new_length, steps_that_fit


def test_steps_that_fit():
    assert steps_that_fit(step=10, per_step_s=2.0, seconds_left=31.0, configured=100) == 25  # 10 + floor(15.5)
    assert steps_that_fit(step=10, per_step_s=2.0, seconds_left=1000.0, configured=100) == 100  # never more
    assert steps_that_fit(step=10, per_step_s=2.0, seconds_left=-5.0, configured=100) == 11  # one more step


def cosine_args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="cosine", warmup_steps=0.1, use_cpu=True,
                             report_to="none")


def test_the_schedule_follows_a_new_length(tmp_path):
    args = cosine_args(tmp_path)
    optimizer = torch.optim.SGD([{"params": [torch.zeros(1)]}, {"params": [torch.zeros(1)], "lr": 0.5}], lr=1.0)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=10, num_training_steps=100)
    for _ in range(20):
        optimizer.step()
        scheduler.step()
    follow_new_length(scheduler, args, 50)  # warm-up: 10% of 50 = 5 steps
    optimizer.step()
    scheduler.step()
    # By hand: step 21 of a 50-step cosine after 5 warm-up steps; each group keeps its own base rate.
    factor = 0.5 * (1 + math.cos(math.pi * (21 - 5) / (50 - 5)))
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([factor, 0.5 * factor])
    reference_optimizer = torch.optim.SGD([torch.zeros(1)], lr=1.0)
    reference = get_cosine_schedule_with_warmup(reference_optimizer, num_warmup_steps=5, num_training_steps=50)
    for _ in range(21):
        reference_optimizer.step()
        reference.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(reference_optimizer.param_groups[0]["lr"])
    for _ in range(29):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # decayed to 0 at the new last step
    stepped = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1)], lr=1.0), step_size=10)
    with pytest.raises(ValueError, match="needs a LambdaLR schedule"):
        follow_new_length(stepped, args, 50)


def test_the_callback_plans_from_the_measured_step_time(tmp_path, monkeypatch, caplog):
    clock = [1000.0]
    monkeypatch.setattr(time_budget.time, "time", lambda: clock[0])
    args = cosine_args(tmp_path)
    optimizer = torch.optim.SGD([torch.zeros(1)], lr=1.0)
    progress = ProgressCallback()
    progress.training_bar = SimpleNamespace(total=100, refresh=lambda: None)
    trainer = SimpleNamespace(lr_scheduler=get_scheduler("cosine", optimizer, num_warmup_steps=10,
                                                         num_training_steps=100),
                              callback_handler=SimpleNamespace(callbacks=[progress]))
    # The deadline 40 s after training starts; 5 steps' worth of time kept for what follows the last step.
    callback = TrainingDeadlineCallback(trainer, deadline=1040.0, reserve_steps=5, check_every=10)
    state, control = TrainerState(max_steps=100), TrainerControl()
    callback.on_train_begin(args, state, control)

    def run_to(step, at):  # steps of equal length from now to `at`
        first, begun = state.global_step, clock[0]
        for state.global_step in range(first + 1, step + 1):
            clock[0] = begun + (at - begun) * (state.global_step - first) / (step - first)
            callback.on_step_end(args, state, control)

    with caplog.at_level(logging.WARNING, logger="training.time_budget"):
        run_to(10, 1010.0)  # 1 s per step: 30 s left, less 5 steps -> 25 more steps
    assert state.max_steps == 35 and progress.training_bar.total == 35
    assert "35 of the configured 100 steps fit (1.00 s per step so far, 5 s kept" in caplog.text
    assert trainer.lr_scheduler.lr_lambdas[0](34) > 0 and trainer.lr_scheduler.lr_lambdas[0](35) == 0
    run_to(20, 1015.0)  # faster now: 0.75 s per step, 25 s left -> (25 - 3.75) / 0.75 = 28.3 more steps
    assert state.max_steps == 48
    far = TrainingDeadlineCallback(trainer, deadline=5000.0, reserve_steps=5, check_every=10)
    state = TrainerState(max_steps=100)
    far.on_train_begin(args, state, control)
    state.global_step, clock[0] = 10, 1025.0
    far.on_step_end(args, state, control)
    assert state.max_steps == 100  # the configured steps fit: nothing changes
    # Step 1 is planned from only when the deadline is that near: here 3 s left and 1 s steps.
    near = TrainingDeadlineCallback(trainer, deadline=1103.0, reserve_steps=0, check_every=10)
    state = TrainerState(max_steps=100)
    clock[0] = 1100.0
    near.on_train_begin(args, state, control)
    state.global_step, clock[0] = 1, 1101.0
    near.on_step_end(args, state, control)
    assert state.max_steps == 3
    slow_start = TrainingDeadlineCallback(trainer, deadline=1200.0, reserve_steps=0, check_every=10)
    state = TrainerState(max_steps=100)
    clock[0] = 1100.0
    slow_start.on_train_begin(args, state, control)
    state.global_step, clock[0] = 1, 1103.0  # a 3 s first step would plan 34 steps: not taken
    slow_start.on_step_end(args, state, control)
    assert state.max_steps == 100


def test_limits_out_of_range_are_refused(capsys):
    with pytest.raises(ValueError, match="max_train_minutes must be > 0"):
        ModelArguments(max_train_minutes=0)
    with pytest.raises(ValueError, match="train_time_reserve_steps must be >= 0"):
        ModelArguments(max_train_minutes=1, train_time_reserve_steps=-1)
    with pytest.raises(ValueError, match="reserve_steps must be >= 0"):
        TrainingDeadlineCallback(None, deadline=0.0, reserve_steps=-1)
    with pytest.raises(SystemExit):
        quickstart.main(["--time_budget_minutes", "-1"])
    assert "--time_budget_minutes must be >= 0" in capsys.readouterr().err
