"""Training cost of the from-scratch video tower (forward + backward, bf16 autocast on CPU) for a grid of frame sizes,
patch sizes, frame counts, depths and patch embeddings (BEiT's linear projection or a convolutional stem): what
finer patches, more frames or a stem would cost the quickstart per step.

    python -m benchmarks.video_tower_cost --threads 2 --batch 64

Each row times `--steps` steps after one warm-up step and reports the fastest (the least disturbed by other work
on a shared machine), with the number of tokens per frame. Only the video tower runs: the text tower, the fusion
layers and the losses are the same for every row.
"""

import argparse
import time

import torch

from modeling_t2v2t.configuration_t2v2t import T2V2TVisionConfig
from modeling_t2v2t.modeling_video_encoder import T2V2TVisionTransformer

# (image size, patch size, frames, layers, patch embedding); hidden 128, 4 heads, MLP 256 as in the quickstart's video
# tower; "conv_stem" with T2V2TVisionConfig's default channels (24, 48, 96).
GRID = ((64, 16, 4, 4, "linear"), (64, 16, 4, 4, "conv_stem"), (64, 16, 8, 4, "linear"), (96, 16, 4, 4, "linear"),
        (64, 8, 4, 2, "linear"), (64, 8, 4, 4, "linear"), (64, 8, 8, 4, "linear"))


def step_seconds(image_size: int, patch_size: int, frames: int, layers: int, patch_embedding: str, batch: int,
                 steps: int) -> float:
    config = T2V2TVisionConfig(image_size=image_size, patch_size=patch_size, num_frames=frames, hidden_size=128,
                               num_hidden_layers=layers, num_attention_heads=4, intermediate_size=256,
                               drop_path_rate=0.0, temporal_scale_init_value=1.0, patch_embedding=patch_embedding)
    model = T2V2TVisionTransformer(config).train()
    pixels = torch.randn(batch, frames, 3, image_size, image_size)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tokens = model(pixels)[0]
        tokens.float().mean().backward()
        times.append(time.perf_counter() - started)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"## Video tower fwd+bwd per step, batch {args.batch}, bf16 autocast, {args.threads} thread(s), "
          f"best of {args.steps}\n")
    print("| frame px | patch px | patch embedding | tokens/frame | frames | layers | s/step |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for image_size, patch_size, frames, layers, patch_embedding in GRID:
        seconds = step_seconds(image_size, patch_size, frames, layers, patch_embedding, args.batch, args.steps)
        tokens = (image_size // patch_size) ** 2 + 1
        print(f"| {image_size} | {patch_size} | {patch_embedding} | {tokens} | {frames} | {layers} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
