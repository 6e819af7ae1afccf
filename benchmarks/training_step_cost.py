"""One training step (forward with the training loss, backward, AdamW step; bf16 autocast on CPU, as the synthetic
configs train) of every method of an ablation config (or of one training config), computed five ways, each step of each
way in turn:

1. `before`: the joint encoders' VTM as it was until commit a81cc60: every VTM pair's text and video gathered first,
   the whole last fusion layer computed, PyTorch's default scaled-dot-product-attention kernel;
2. `+cls`: the last fusion layer for [CLS] only (`fuse(..., cls_only=True)`);
3. `+shared`: and each text's and video's projections computed once for all its VTM pairs (`text_index`,
   `video_index`);
4. `+math`: and PyTorch's math attention kernel (`cpu_training_attention="math"`);
5. `+one-row` (the current training step): and the [CLS]-only layer's attention with its key and value projections
   moved to the query's side (`BertAttentionBlock._attend_one_row`), instead of projecting every video token of every
   pair to keys and values.

All five compute the same function (tests/test_modeling.py pins 2, 3 and 5; 4 only changes float rounding). Methods
without a joint encoder differ only in the kernel.

    python -m benchmarks.training_step_cost --threads 1            # the ablation's methods, one thread each
    python -m benchmarks.training_step_cost --variants t2v2t_self --steps 5
    python -m benchmarks.training_step_cost --config training/configs/synthetic_quickstart.json --threads 2

Each model is built as the ablation builds it (the config's shared settings plus the variant's model fields, the
pretrained text tower with its frozen layers), on one random batch (random token ids with some right padding, random
pixels, every pair its own video). The ways alternate step by step in one process, so load from other work on a
shared machine falls on all of them; each cell is the fastest step (the least disturbed), after one warm-up step of
each.
"""

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from modeling_t2v2t import T2V2TModel
from modeling_t2v2t.attention_t2v2t import attend
from modeling_t2v2t.modeling_text_encoder import BertAttentionBlock
from training.ablation import run_config
from training.arguments import ModelArguments
from training.model_factory import freeze_text_layers, load_model_and_processor

ROOT = Path(__file__).resolve().parent.parent
WAYS = ("before", "+cls", "+shared", "+math", "+one-row")


def projected_one_row(self, hidden_states, context, bias, context_index, dropout):
    """`BertAttentionBlock`'s one-row attention as it was before `+one-row`: every context token projected to a
    key and a value."""
    key, value = self.self.key(context), self.self.value(context)
    if context_index is not None:
        key, value = key[context_index], value[context_index]
    return attend(self.self.query(hidden_states), key, value, self.num_heads, bias, dropout)


@contextlib.contextmanager
def computed(way: str):
    """Runs the block's training step the `way` given (see the module docstring)."""
    original, one_row = T2V2TModel.fuse, BertAttentionBlock._attend_one_row

    def gathered(self, text_states, attention_mask, video_tokens, output_bypass_probs=False, cls_only=False,
                 text_index=None, video_index=None):
        # The VTM inputs as the code before gave them: one row per pair, indexed before the fusion.
        if text_index is not None:
            text_states, attention_mask = text_states[text_index], attention_mask[text_index]
        if video_index is not None:
            video_tokens = video_tokens[video_index]
        return original(self, text_states, attention_mask, video_tokens, output_bypass_probs,
                        cls_only and way != "before")

    kernel = sdpa_kernel(SDPBackend.MATH) if way in ("+math", "+one-row") else contextlib.nullcontext()
    if way in ("before", "+cls"):
        T2V2TModel.fuse = gathered
    if way != "+one-row":
        BertAttentionBlock._attend_one_row = projected_one_row
    try:
        with kernel:
            yield
    finally:
        T2V2TModel.fuse, BertAttentionBlock._attend_one_row = original, one_row


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


def timed_step(model, optimizer, inputs: dict, way: str = WAYS[-1], bf16: bool = True) -> float:
    """Seconds for one training step computed `way` (default: as the library does now), in bf16 autocast or
    float32."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    started = time.perf_counter()
    with computed(way):
        with autocast:
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
    if "variants" in config:  # an ablation config: every method (variant) it trains
        variants = args.variants.split(",") if args.variants else list(config["variants"])
        runs = {config["variants"][variant].get("_label", variant): run_config(config, variant, seed=0,
                                                                                 run_dir="unused")
                for variant in variants}
    else:  # one training config (e.g. the quickstart's)
        runs = {Path(args.config).stem: config}
    batch = next(iter(runs.values()))["per_device_train_batch_size"]

    print(f"## One training step per method: forward + loss, backward, AdamW; bf16 autocast, batch "
          f"{batch}, {args.threads} thread(s), fastest of {args.steps}\n")
    print("| method | " + " | ".join(f"{way}, s/step" for way in WAYS) + " | before / now |")
    print("|---|" + "---:|" * (len(WAYS) + 1))
    for label, run in runs.items():
        torch.manual_seed(0)
        model = build(run)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        inputs = batch_for(model, run["per_device_train_batch_size"], run.get("max_length", 32))
        times = {way: [] for way in WAYS}
        for repeat in range(args.steps + 1):
            for way in WAYS:
                seconds = timed_step(model, optimizer, inputs, way)
                if repeat:  # the first step of each way warms up
                    times[way].append(seconds)
        best = {way: min(times[way]) for way in WAYS}
        cells = " | ".join(f"{best[way]:.3f}" for way in WAYS)
        print(f"| {label} | {cells} | {best['before'] / best[WAYS[-1]]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
