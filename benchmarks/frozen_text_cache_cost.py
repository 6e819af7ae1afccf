"""Training step cost (forward with the training loss, backward, AdamW step; float32, as CPUs without AMX train) of a
training config's model three ways, on one batch with a contrast caption for most pairs, as the quickstart trains:

1. `config`: the config as it is (e.g. the quickstart's text layer 1 trained);
2. `frozen`: the whole text-only stage frozen (`freeze_text_layers` = `fusion_layer`);
3. `frozen+memo`: and its features read from `training.frozen_text_cache` (every caption already in the memo, as
   in training once each caption has come back; the first pass over the data computes them).

The three models alternate step by step in one process, so load from other work falls on all of them; each cell
is the fastest and the median of `--steps` steps after one warm-up step each.

    python -m benchmarks.frozen_text_cache_cost --threads 2
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.training_step_cost import batch_for, build
from training.frozen_text_cache import FrozenTextStageCache

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "training" / "configs" / "synthetic_quickstart.json"))
    parser.add_argument("--contrasts", type=int, default=58, help="contrast captions in the batch (the quickstart's "
                        "batches of 64 pairs hold about 58)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = json.loads(Path(args.config).read_text())
    batch, tokens = run["per_device_train_batch_size"], run.get("max_length", 32)
    fusion_layer = run["model_config"].get("fusion_layer", 9)
    models = {}
    for way, frozen in (("config", run.get("freeze_text_layers", 0)), ("frozen", fusion_layer),
                        ("frozen+memo", fusion_layer)):
        torch.manual_seed(0)
        models[way] = build({**run, "freeze_text_layers": frozen})
    FrozenTextStageCache(models["frozen+memo"].text_model, max_mb=1024).install()

    rows = batch_for(models["config"], batch + args.contrasts, tokens)
    inputs = dict(input_ids=rows["input_ids"][:batch], attention_mask=rows["attention_mask"][:batch],
                  pixel_values_videos=rows["pixel_values_videos"][:batch], video_ids=torch.arange(batch),
                  return_loss=True, contrast_input_ids=rows["input_ids"][batch:],
                  contrast_attention_mask=rows["attention_mask"][batch:],
                  contrast_pair_index=torch.arange(args.contrasts) % batch)
    optimizers = {way: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
                  for way, model in models.items()}
    times = {way: [] for way in models}
    for repeat in range(args.steps + 1):
        for way, model in models.items():
            started = time.perf_counter()
            model(**inputs).loss.backward()
            optimizers[way].step()
            optimizers[way].zero_grad()
            if repeat:  # the first step of each warms up (and fills the memo)
                times[way].append(time.perf_counter() - started)

    print(f"## One training step: batch {batch} + {args.contrasts} contrast captions, {tokens} tokens, float32, "
          f"{args.threads} thread(s), {args.steps} steps each\n")
    print("| way | fastest, s/step | median, s/step | median against `config` |")
    print("|---|---:|---:|---:|")
    base = statistics.median(times["config"])
    for way, seconds in times.items():
        median = statistics.median(seconds)
        print(f"| {way} | {min(seconds):.3f} | {median:.3f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
