"""Quickstart: render a small copy of the built-in synthetic benchmark, build a tiny T2V2T, save it as a
Hub-ready folder, reload it with the Auto classes as Hub custom code, and rank the test videos for a test caption
(embedding search, then joint-encoder rerank).

The model is randomly initialised, so its ranking is not meaningful yet: this shows the whole API path offline.
Training on the synthetic benchmark replaces the random weights once the training scripts land.

    python training/quickstart.py --output_dir outputs/quickstart
"""

import argparse
import logging
from pathlib import Path

import torch
from transformers import AutoModel, AutoProcessor, BertTokenizer

from modeling_t2v2t import T2V2TConfig, T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor, save_hub_folder
from processing.builders import build_vindlu_json
from processing.synthetic_benchmark import ensure_benchmark
from processing.text_cleaning import clean_caption

logger = logging.getLogger("quickstart")


def build_processor(folder: Path, captions: list[str], num_frames: int, image_size: int) -> T2V2TProcessor:
    """A word-level BERT vocabulary of the benchmark's captions (no pretrained tokenizer is available offline)."""
    words = sorted({word for caption in captions for word in clean_caption(caption).split()})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))
    video_processor = T2V2TVideoProcessor(num_frames=num_frames, size={"height": image_size, "width": image_size})
    return T2V2TProcessor(video_processor, tokenizer, max_length=24)


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
    parser.add_argument("--num_videos", type=int, default=32, help="training videos of the benchmark to render")
    parser.add_argument("--num_frames", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)

    benchmark = ensure_benchmark(args.output_dir / "synthetic", num_videos=args.num_videos, seed=args.seed)
    train, _ = build_vindlu_json(benchmark["annotations"]["train"], benchmark["video_root"], split="train")
    test, _ = build_vindlu_json(benchmark["annotations"]["test"], benchmark["video_root"], split="test")
    logger.info("1. Synthetic benchmark ready: %d train, %d test videos", len(train), len(test))

    captions = [caption for rows in (train["captions"], test["captions"]) for group in rows for caption in group]
    processor = build_processor(args.output_dir / "tokenizer", captions, args.num_frames, image_size=64)
    model = T2V2TModel(tiny_config(len(processor.tokenizer), args.num_frames, image_size=64))
    hub_dir = save_hub_folder(model, processor, args.output_dir / "t2v2t-tiny")
    logger.info("2. Saved a Hub-ready folder: %s", hub_dir)

    model = AutoModel.from_pretrained(hub_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(hub_dir, trust_remote_code=True)
    logger.info("3. Reloaded %s and %s from the folder", type(model).__name__, type(processor).__name__)

    query, answer = test[0]["captions"][0], 0
    with torch.no_grad():
        videos = model.encode_video(processor(videos=list(test["video"]))["pixel_values_videos"])
        text = model.encode_text(**processor(text=[clean_caption(query)]))
        similarity = (text.text_embeds @ videos.video_embeds.T)[0]  # stage 1: embedding search
        query_per_video = text.select(torch.zeros(len(test), dtype=torch.long))
        reranked = model.score_pairs(text_encoding=query_per_video, video_encoding=videos).scores  # stage 2
    logger.info("4. Scored the query against every test video")

    print(f"\nQuery: {query!r}  (random weights: rankings are not meaningful before training)\n")
    print(f"{'rank':>4}  {'video':<18} {'embedding sim':>13} {'rerank score':>12}")
    for rank, index in enumerate(torch.argsort(reranked, descending=True).tolist()[:5], start=1):
        mark = "  <- the captioned video" if index == answer else ""
        print(f"{rank:>4}  {test[index]['video_id'].split('/')[-1]:<18} {similarity[index].item():>13.4f} "
              f"{reranked[index].item():>12.4f}{mark}")


if __name__ == "__main__":
    main()
