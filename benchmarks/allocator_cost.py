"""The quickstart's training step (forward with the loss, backward, AdamW; bf16 autocast on CPU) under each heap
allocator: glibc's malloc as is, glibc's malloc keeping large blocks (`MALLOC_MMAP_THRESHOLD_` at its 32 MB maximum and
a high `MALLOC_TRIM_THRESHOLD_`: what it costs to hand freed blocks back to the system), and tcmalloc and jemalloc
preloaded where installed (`training/install_tcmalloc.sh`; jemalloc is Debian's `libjemalloc2`, not installed by the
project). Each allocator must be chosen before Python starts, so each row is a child process; the children run in
turn, `--repeats` times, so load from other work falls on all rows.

    python -m benchmarks.allocator_cost                       # 2 threads, 20 steps per child, 2 rounds
    python -m benchmarks.allocator_cost --threads 1 --steps 10

Columns: the fastest and the median step over all of a row's rounds (after 3 warm-up steps per child), and the
minor page faults per timed step (`getrusage`): the faults glibc's malloc takes when it maps freed memory back in.
"""

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "training" / "configs" / "synthetic_quickstart.json"
GLIBC_KEEP = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30)}


def library(pattern: str) -> str | None:
    found = sorted(glob.glob(pattern))
    return found[0] if found else None


def allocators() -> dict[str, dict | None]:
    """Row label -> environment for the child (`None`: not installed here)."""
    tcmalloc = subprocess.run(["sh", str(ROOT / "training" / "install_tcmalloc.sh"), "--path"], capture_output=True,
                              text=True, check=False).stdout.strip()
    jemalloc = library("/usr/lib/*/libjemalloc.so.2")
    return {
        "glibc malloc": {},
        "glibc malloc, large blocks kept": GLIBC_KEEP,
        "tcmalloc (preloaded)": {"LD_PRELOAD": tcmalloc} if tcmalloc else None,
        "jemalloc (preloaded)": {"LD_PRELOAD": jemalloc} if jemalloc else None,
    }


def child(args) -> None:
    """Times `args.steps` training steps in this process and prints them, with the page faults, as JSON."""
    import torch

    from benchmarks.training_step_cost import batch_for, build, timed_step
    from training.cpu_allocator import active_allocator

    torch.set_num_threads(args.threads)
    run = json.loads(Path(args.config).read_text())
    torch.manual_seed(0)
    model = build(run)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    inputs = batch_for(model, run["per_device_train_batch_size"], run.get("max_length", 32))
    for _ in range(3):
        timed_step(model, optimizer, inputs, "+one-row")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = [timed_step(model, optimizer, inputs, "+one-row") for _ in range(args.steps)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({"seconds": seconds, "faults_per_step": faults / args.steps, "allocator": active_allocator()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIG), help="a training config (the quickstart's by default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per child")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the allocators")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    rows = allocators()
    results = {label: [] for label, env in rows.items() if env is not None}
    command = [sys.executable, "-m", "benchmarks.allocator_cost", "--child", "--config", args.config,
               "--threads", str(args.threads), "--steps", str(args.steps)]
    for _ in range(args.repeats):
        for label in results:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), **rows[label]}
            started = time.perf_counter()
            output = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
            results[label].append({**json.loads(output.strip().splitlines()[-1]),
                                   "wall": time.perf_counter() - started})

    print(f"## One quickstart training step per heap allocator: batch 64, bf16 autocast, {args.threads} thread(s); "
          f"{args.steps} timed steps per child, {args.repeats} child(ren) per row\n")
    print("| allocator | active in the child | fastest s/step | median s/step | minor page faults per step |")
    print("|---|---|---:|---:|---:|")
    for label, env in rows.items():
        if env is None:
            print(f"| {label} | not installed | | | |")
            continue
        seconds = [second for result in results[label] for second in result["seconds"]]
        faults = statistics.mean(result["faults_per_step"] for result in results[label])
        active = ", ".join(sorted({result["allocator"] for result in results[label]}))
        print(f"| {label} | {active} | {min(seconds):.3f} | {statistics.median(seconds):.3f} | {faults:,.0f} |")


if __name__ == "__main__":
    main()
