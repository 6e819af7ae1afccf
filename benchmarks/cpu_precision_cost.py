"""One training step of a config's model (the quickstart's by default) in bf16 autocast and in float32, on this CPU:
forward with the training loss, backward, AdamW step, on one random batch of the config's shapes (built as
`training_step_cost` builds it). The two precisions alternate step by step in one process, so load from other work
falls on both; each cell is the fastest and the median of `--steps` timed steps, after one warm-up step of each.

    python -m benchmarks.cpu_precision_cost                    # 1 and 2 threads
    python -m benchmarks.cpu_precision_cost --threads 2 --steps 10

`training.cpu_precision` (`--cpu_bf16_needs_amx`) keeps bf16 only on CPUs with AMX tiles, from this table.
"""

import argparse
import json
import statistics
from pathlib import Path

import torch

from benchmarks.training_step_cost import batch_for, build, timed_step
from training.cpu_precision import cpu_has_amx, cpu_has_native_bf16

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("bf16 autocast", "float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "training" / "configs" / "synthetic_quickstart.json"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per precision and thread count")
    parser.add_argument("--tokens", type=int, default=16, help="caption length of the random batch")
    args = parser.parse_args()
    run = json.loads(Path(args.config).read_text())
    torch.manual_seed(0)
    model = build(run)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = run["per_device_train_batch_size"]
    inputs = batch_for(model, batch, args.tokens)

    print(f"## One training step of {Path(args.config).name} (batch {batch}), bf16 autocast against float32\n")
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, AMX tiles: {cpu_has_amx()}, native bf16 "
          f"(AVX512-BF16 or AMX): {cpu_has_native_bf16()}; torch {torch.__version__}\n")
    print("| threads | " + " | ".join(f"{p}, s/step (fastest / median)" for p in PRECISIONS) + " | float32 / bf16 |")
    print("|---:|" + "---:|" * (len(PRECISIONS) + 1))
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = {precision: [] for precision in PRECISIONS}
        for step in range(args.steps + 1):
            for precision in PRECISIONS:
                elapsed = timed_step(model, optimizer, inputs, bf16=precision == "bf16 autocast")
                if step:  # step 0 warms each precision up
                    times[precision].append(elapsed)
        cells = [f"{min(t):.3f} / {statistics.median(t):.3f}" for t in times.values()]
        ratio = statistics.median(times["float32"]) / statistics.median(times["bf16 autocast"])
        print(f"| {threads} | " + " | ".join(cells) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()
