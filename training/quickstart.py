"""Quickstart: build a tiny T2V2T, save it as a Hub-ready folder, reload it with the Auto classes as Hub custom
code, and rank a few rendered clips for a text query (embedding search, then joint-encoder rerank).

The model is randomly initialised, so its ranking is not meaningful yet: this shows the whole API path offline.
Training on the built-in synthetic benchmark replaces the random weights once the training scripts land.

    python training/quickstart.py --output_dir outputs/quickstart
"""

import argparse
import logging
from pathlib import Path

import av
import numpy as np
import torch
from transformers import AutoModel, AutoProcessor, BertTokenizer

from modeling_t2v2t import T2V2TConfig, T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor, save_hub_folder

logger = logging.getLogger("quickstart")

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230)}
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
CLIPS = [("red", "right"), ("green", "left"), ("blue", "up"), ("red", "down")]


def render_clip(path: Path, colour: str, motion: str, frames: int = 16, size: int = 64) -> Path:
    """A square of `colour` moving `motion` on a grey background, written as an h264 mp4 with PyAV."""
    dx, dy = MOTIONS[motion]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            image = np.full((size, size, 3), 128, dtype=np.uint8)
            x = size // 2 - 8 + dx * (t - frames // 2) * 2
            y = size // 2 - 8 + dy * (t - frames // 2) * 2
            image[max(y, 0):max(y + 16, 0), max(x, 0):max(x + 16, 0)] = COLOURS[colour]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def build_processor(folder: Path, num_frames: int, image_size: int) -> T2V2TProcessor:
    words = sorted(set(COLOURS) | set(MOTIONS) | {"a", "square", "moves", "the", "to"})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))
    video_processor = T2V2TVideoProcessor(num_frames=num_frames, size={"height": image_size, "width": image_size})
    return T2V2TProcessor(video_processor, tokenizer, max_length=16)


def tiny_config(vocab_size: int, num_frames: int, image_size: int) -> T2V2TConfig:
    return T2V2TConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=128, pad_token_id=0, cls_token_id=2, sep_token_id=3, mask_token_id=4),
        vision_config=dict(image_size=image_size, patch_size=16, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=128, num_frames=num_frames),
        fusion_mode="t2v2t", bypass_mode="self", fusion_layer=2, embed_dim=32,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/quickstart"))
    parser.add_argument("--query", default="a red square moves to the right")
    parser.add_argument("--num_frames", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)

    clip_dir = args.output_dir / "clips"
    clip_dir.mkdir(parents=True, exist_ok=True)
    clips = [render_clip(clip_dir / f"{colour}_{motion}.mp4", colour, motion) for colour, motion in CLIPS]
    logger.info("1. Rendered %d clips into %s", len(clips), clip_dir)

    processor = build_processor(args.output_dir / "tokenizer", args.num_frames, image_size=64)
    model = T2V2TModel(tiny_config(len(processor.tokenizer), args.num_frames, image_size=64))
    hub_dir = save_hub_folder(model, processor, args.output_dir / "t2v2t-tiny")
    logger.info("2. Saved a Hub-ready folder: %s", hub_dir)

    model = AutoModel.from_pretrained(hub_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(hub_dir, trust_remote_code=True)
    logger.info("3. Reloaded %s and %s from the folder", type(model).__name__, type(processor).__name__)

    with torch.no_grad():
        videos = model.encode_video(processor(videos=[str(path) for path in clips])["pixel_values_videos"])
        text = model.encode_text(**processor(text=[args.query]))
        similarity = (text.text_embeds @ videos.video_embeds.T)[0]  # stage 1: embedding search
        query_per_clip = text.select(torch.zeros(len(clips), dtype=torch.long))
        reranked = model.score_pairs(text_encoding=query_per_clip, video_encoding=videos).scores  # stage 2
    logger.info("4. Scored the query against every clip")

    print(f"\nQuery: {args.query!r}  (random weights: rankings are not meaningful before training)\n")
    print(f"{'rank':>4}  {'clip':<22} {'embedding sim':>13} {'rerank score':>12}")
    for rank, index in enumerate(torch.argsort(reranked, descending=True).tolist(), start=1):
        print(f"{rank:>4}  {clips[index].name:<22} {similarity[index].item():>13.4f} {reranked[index].item():>12.4f}")


if __name__ == "__main__":
    main()
