"""One training step (forward with the training loss, backward, AdamW step; bf16 autocast on CPU, as the synthetic
configs train) of every method of an ablation config, with PyTorch's default scaled-dot-product-attention kernel and
with its math kernel (`torch.nn.attention.SDPBackend.MATH`).

    python -m benchmarks.training_step_cost --threads 1            # the ablation's methods, one thread each
    python -m benchmarks.training_step_cost --variants t2v2t_self --steps 5

Each model is built as the ablation builds it (the config's shared settings plus the variant's model fields, the
pretrained text tower with its frozen layers), on one random batch (random token ids with some right padding, random
pixels, every pair its own video). The two kernels alternate step by step, so load from other work on a shared
machine falls on both; each cell is the fastest step (the least disturbed), after one warm-up step of each.
"""

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from training.ablation import run_config
from training.arguments import ModelArguments
from training.model_factory import freeze_text_layers, load_model_and_processor

ROOT = Path(__file__).resolve().parent.parent
KERNELS = {"default": contextlib.nullcontext, "math": lambda: sdpa_kernel(SDPBackend.MATH)}


def build(run: dict):
    model_args = ModelArguments(model_config=run["model_config"], num_frames=run.get("num_frames", 4),
                                text_model_name_or_path=run.get("text_model_name_or_path"))
    model, _ = load_model_and_processor(model_args, pretraining=False, captions=["a red circle moves left"],
                                        output_dir=tempfile.mkdtemp(prefix="training_step_cost."))
    freeze_text_layers(model, run.get("freeze_text_layers", 0))
    return model.train()


def batch_for(model, size: int, tokens: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    text, vision = model.config.text_config, model.config.vision_config
    ids = torch.randint(1000, text.vocab_size, (size, tokens), generator=generator)
    mask = torch.ones_like(ids)
    mask[:, tokens // 2:] = torch.rand(size, tokens - tokens // 2, generator=generator) < 0.3  # some padding
    mask = mask.cummin(dim=1).values  # right-padded, as the processor pads
    pixels = torch.randn(size, vision.num_frames, 3, vision.image_size, vision.image_size, generator=generator)
    return dict(input_ids=ids, attention_mask=mask, pixel_values_videos=pixels, video_ids=torch.arange(size),
                return_loss=True)


def timed_step(model, optimizer, inputs: dict, kernel: str) -> float:
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16), KERNELS[kernel]():
        loss = model(**inputs).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "training" / "configs" / "ablation" / "synthetic.json"))
    parser.add_argument("--variants", default=None, help="comma-separated; default every variant of the config")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per kernel (after one warm-up each)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = json.loads(Path(args.config).read_text())
    variants = args.variants.split(",") if args.variants else list(config["variants"])

    print(f"## One training step per method: forward + loss, backward, AdamW; bf16 autocast, batch "
          f"{config['shared']['per_device_train_batch_size']}, {args.threads} thread(s), fastest of {args.steps}\n")
    print("| method | default SDPA kernel, s/step | math SDPA kernel, s/step | default / math |")
    print("|---|---:|---:|---:|")
    for variant in variants:
        run = run_config(config, variant, seed=0, run_dir="unused")
        torch.manual_seed(0)
        model = build(run)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        inputs = batch_for(model, run["per_device_train_batch_size"], run.get("max_length", 32))
        times = {kernel: [] for kernel in KERNELS}
        for repeat in range(args.steps + 1):
            for kernel in KERNELS:
                seconds = timed_step(model, optimizer, inputs, kernel)
                if repeat:  # the first step of each kernel warms up
                    times[kernel].append(seconds)
        default, math = min(times["default"]), min(times["math"])
        label = config["variants"][variant].get("_label", variant)
        print(f"| {label} | {default:.3f} | {math:.3f} | {default / math:.2f} |", flush=True)


if __name__ == "__main__":
    main()
