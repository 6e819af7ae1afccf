"""Whether a CPU training run takes `--bf16` as given, or trains in float32 on CPUs where bf16 does not pay.

bf16 autocast pays on CPU only where matrix products run on AMX tiles. On a 2-core Xeon with AVX-512 and AMX a
quickstart step took 0.37 s in bf16 against 0.47-0.50 s in float32; on a 2-core Xeon with AVX512-BF16 but no AMX it
took 0.73 s in bf16 against 0.52 s in float32 (2 threads, median; 1.21 against 0.82 s with 1 thread):
`python -m benchmarks.cpu_precision_cost` prints this table for the machine it runs on. `--cpu_bf16_needs_amx`
(the quickstart's config sets it) keeps `--bf16` on CPUs with AMX and trains in float32 elsewhere, and says so in
the log; without it `--bf16` is taken as given.
"""

import logging
import os

import torch

logger = logging.getLogger(__name__)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, else every CPU)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_has_amx() -> bool | None:
    """Whether this CPU has AMX tiles (PyTorch's own check, which is private: `None` if this PyTorch lacks it)."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return None if check is None else bool(check())


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX); `True` when PyTorch cannot tell (no warning)."""
    try:  # oneDNN's own check (private, hence the fallback)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def training_precision(training_args) -> str:
    """The precision a run trains in once the policy has run: `"bf16"` or `"fp16"` autocast, else `"float32"`. Saved
    as `train_precision` in train_results.json, since training_config.json keeps `--bf16` as given."""
    if training_args.bf16:
        return "bf16"
    return "fp16" if training_args.fp16 else "float32"


def apply_cpu_bf16_policy(training_args, needs_amx: bool) -> None:
    """
    For a CPU run (`training_args.use_cpu`, or no GPU): with `needs_amx` and `--bf16`, switch bf16 autocast off
    (`bf16` and the `mixed_precision` the Trainer's accelerator reads) where the CPU has no AMX, and log the decision
    either way. Without `needs_amx`, only warn when `--bf16` would be emulated.
    """
    if not training_args.bf16:
        return
    if needs_amx:
        amx = cpu_has_amx()
        if amx is None:
            logger.warning("--cpu_bf16_needs_amx: this PyTorch cannot tell whether the CPU has AMX; keeping --bf16.")
        elif amx:
            logger.info("Training in bf16 autocast: this CPU has AMX tiles (--cpu_bf16_needs_amx).")
        else:
            training_args.bf16 = False
            training_args.mixed_precision = "no"
            logger.info("Training in float32, not bf16: this CPU has no AMX tiles, where bf16 autocast ran slower "
                        "than float32 (--cpu_bf16_needs_amx; benchmarks/cpu_precision_cost.py).")
        return
    if not cpu_has_native_bf16():
        logger.warning("--bf16 on a CPU without native bf16 instructions (AVX512-BF16/AMX) is emulated and can be "
                       "slower than float32; consider dropping it.")
