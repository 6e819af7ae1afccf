"""A wall-clock deadline for a training run: the steps that fit, planned from the step time measured as it runs.

The quickstart promises 12 minutes on a fresh 2-core machine, and 2-core machines differ: one quickstart training
step took about 0.6 s on a Xeon with AVX-512 and 1.1 s on an AMD EPYC with AVX2 only (2 threads each), so a fixed
step count either overruns the slow machine or leaves the fast one idle. `TrainingDeadlineCallback` times the steps,
cuts `max_steps` to the number that ends by the deadline (never more than the configured `max_steps`), and makes
the learning-rate schedule follow the new length: its warm-up and decay are recomputed for the new total, so a
cosine still decays to 0 at the last step. Hand-written because the Trainer fixes `max_steps`, and its schedule with
it, when training starts; it has no time limit.
"""

import logging
import math
import time

import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback
from transformers.optimization import get_scheduler
from transformers.trainer_callback import ProgressCallback

logger = logging.getLogger(__name__)


def steps_that_fit(step: int, per_step_s: float, seconds_left: float, configured: int) -> int:
    """The last step of a run at `step` whose steps take `per_step_s` and that has `seconds_left`: at least one more
    step (the one that evaluates and saves), at most `configured`."""
    fit = step + math.floor(max(seconds_left, 0.0) / per_step_s)
    return min(configured, max(step + 1, fit))


def lambda_schedule(lr_scheduler, args) -> LambdaLR:
    """The `LambdaLR` behind the Trainer's scheduler (accelerate may wrap it); `ValueError` for other schedules,
    whose length cannot be changed."""
    inner = getattr(lr_scheduler, "scheduler", lr_scheduler)
    if not isinstance(inner, LambdaLR):
        raise ValueError(f"A training deadline needs a LambdaLR schedule (linear, cosine, constant...); "
                         f"lr_scheduler_type={args.lr_scheduler_type!r} gives {type(inner).__name__}.")
    return inner


def follow_new_length(lr_scheduler, args, total_steps: int) -> None:
    """Recompute `lr_scheduler`'s schedule (`args.lr_scheduler_type`, warm-up from `args.warmup_steps`) for a run of
    `total_steps`; the next scheduler step uses it."""
    inner = lambda_schedule(lr_scheduler, args)
    # A throwaway optimizer: building a schedule sets its optimizer's learning rate.
    fresh = get_scheduler(args.lr_scheduler_type, optimizer=torch.optim.SGD([torch.zeros(1)], lr=1.0),
                          num_warmup_steps=args.get_warmup_steps(total_steps), num_training_steps=total_steps,
                          scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    inner.lr_lambdas = [fresh.lr_lambdas[0]] * len(inner.optimizer.param_groups)


class TrainingDeadlineCallback(TrainerCallback):
    """
    Ends training so that `reserve_steps` steps' worth of time is left before `deadline` (a `time.time()` value)
    for what follows the last step (its validation, the checkpoint, and whatever the caller does after training;
    counted in steps because it scales with the machine's speed as the steps do). Every `check_every` steps
    it replans from the mean step time so far, including the data loading and any evaluation so far: `max_steps`
    shrinks to what fits, or grows back towards the configured `max_steps` once steps get faster (the first epoch
    also fills the decoded-video cache). The first plan is logged as a warning and later changes of 2% of the
    configured steps or more at info level; the schedule follows every change (`follow_new_length`), and
    all processes take the smallest plan, so that they stop together. After step 1 a plan is taken only if the
    deadline is so near that the run must end before the next check (a deadline already spent stops it at step 2).
    """

    def __init__(self, trainer, deadline: float, reserve_steps: float = 0.0, check_every: int = 10):
        if reserve_steps < 0 or check_every < 1:
            raise ValueError(f"TrainingDeadlineCallback: reserve_steps must be >= 0 and check_every >= 1, got "
                             f"{reserve_steps} and {check_every}.")
        self.trainer = trainer
        self.deadline = deadline
        self.reserve_steps = reserve_steps
        self.check_every = check_every
        self.configured_steps = None
        self.logged_plan = None

    def on_train_begin(self, args, state, control, **kwargs):
        lambda_schedule(self.trainer.lr_scheduler, args)  # refused before the first step, not at the first plan
        self.configured_steps = state.max_steps
        self.started, self.start_step = time.time(), state.global_step  # a resumed run times its own steps
        if self.deadline <= self.started:
            logger.warning("The training deadline has passed before training started: the run stops after two "
                           "steps.")

    def on_step_end(self, args, state, control, **kwargs):
        done = state.global_step - self.start_step
        if done != 1 and done % self.check_every:  # the same steps on every process (the plans are all-reduced)
            return
        now = time.time()
        per_step = (now - self.started) / done
        planned = steps_that_fit(state.global_step, per_step,
                                 self.deadline - now - self.reserve_steps * per_step, self.configured_steps)
        if dist.is_available() and dist.is_initialized():
            agreed = torch.tensor([planned], device=args.device)
            dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
            planned = int(agreed.item())
        if done == 1 and planned > state.global_step + self.check_every:
            return  # the first step (worker start-up, first decodes) is no measure: plan from later steps
        if planned == state.max_steps:
            return
        if self.logged_plan is None:
            self.logged_plan = planned
            logger.warning("Training deadline: %d of the configured %d steps fit (%.2f s per step so far, %.0f s "
                           "kept for what follows the last step); the learning-rate schedule follows.", planned,
                           self.configured_steps, per_step, self.reserve_steps * per_step)
        elif abs(planned - self.logged_plan) >= max(1, 0.02 * self.configured_steps):  # log the larger changes
            self.logged_plan = planned
            logger.info("Training deadline: now %d steps (%.2f s per step so far).", planned, per_step)
        state.max_steps = planned
        follow_new_length(self.trainer.lr_scheduler, args, planned)
        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, ProgressCallback) and callback.training_bar is not None:
                callback.training_bar.total = planned
                callback.training_bar.refresh()


__all__ = ["TrainingDeadlineCallback", "follow_new_length", "steps_that_fit"]
