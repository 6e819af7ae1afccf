"""Tiny T2V2T configs, inputs and tokenizers shared by the tests (hidden 32, 2-3 layers, 4 heads, 32x32 frames)."""

from pathlib import Path

import torch
from transformers import BertTokenizer

from modeling_t2v2t import T2V2TConfig, T2V2TModel

WORDS = ["a", "red", "blue", "green", "square", "circle", "moves", "left", "right", "up", "down", "then", "spins"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# A from-scratch model config for the training-script tests (`"model_config"` of a finetune JSON config).
TINY_MODEL = {
    "text_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48,
                    "max_position_embeddings": 64},
    "vision_config": {"image_size": 32, "patch_size": 16, "hidden_size": 32, "num_hidden_layers": 1,
                      "num_attention_heads": 4, "intermediate_size": 48, "drop_path_rate": 0.0},
    "fusion_layer": 1, "embed_dim": 16,
}


def tiny_config(**overrides) -> T2V2TConfig:
    """A T2V2T config small enough for CPU tests; `text_config`/`vision_config` dicts update the defaults."""
    text = dict(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
                max_position_embeddings=64, pad_token_id=0, cls_token_id=2, sep_token_id=3, mask_token_id=4)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=48, num_frames=3, drop_path_rate=0.0)
    text.update(overrides.pop("text_config", {}))
    vision.update(overrides.pop("vision_config", {}))
    kwargs = dict(fusion_layer=1, embed_dim=16)
    kwargs.update(overrides)
    return T2V2TConfig(text_config=text, vision_config=vision, **kwargs)


def tiny_inputs(config: T2V2TConfig, batch: int = 4, frames: int | None = None, seed: int = 0) -> dict:
    """Random captions (with padding in the first) and clips for `config`, plus video ids with one repeat."""
    generator = torch.Generator().manual_seed(seed)
    vision = config.vision_config
    frames = frames or vision.num_frames
    input_ids = torch.randint(5, config.text_config.vocab_size, (batch, 7), generator=generator)
    input_ids[:, 0] = config.text_config.cls_token_id
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 5:] = 0
    input_ids[0, 5:] = config.text_config.pad_token_id
    pixels = torch.randn(batch, frames, vision.num_channels, vision.image_size, vision.image_size,
                         generator=generator)
    video_ids = torch.arange(batch)
    video_ids[1] = 0  # captions 0 and 1 describe the same video
    return dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=pixels, video_ids=video_ids)


def tiny_gallery(num_videos: int, captions_per_video: int, fusion_mode: str = "t2v2t"):
    """
    A tiny eval-mode model (seeded) and a retrieval gallery for it: `(model, inputs, text_batches, videos,
    text_to_video)`, where `inputs` holds every caption (`captions_per_video` per video, in video order), the captions
    come in batches of 4 and `videos` is `(num_videos, T, C, H, W)`.
    """
    torch.manual_seed(0)
    config = tiny_config(num_t2v_layers=1, fusion_mode=fusion_mode)
    model = T2V2TModel(config).eval()
    inputs = tiny_inputs(config, batch=num_videos * captions_per_video, seed=1)
    videos = tiny_inputs(config, batch=num_videos, seed=2)["pixel_values_videos"]
    text_batches = [{"input_ids": inputs["input_ids"][i:i + 4], "attention_mask": inputs["attention_mask"][i:i + 4]}
                    for i in range(0, len(inputs["input_ids"]), 4)]
    text_to_video = torch.arange(num_videos).repeat_interleave(captions_per_video)
    return model, inputs, text_batches, videos, text_to_video


def write_tiny_vocab(folder: Path, words=WORDS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(SPECIAL + list(words)) + "\n")
    return path


def tiny_tokenizer(folder: Path) -> BertTokenizer:
    # BertTokenizer(vocab_file=...) silently ignores the file in transformers v5; `vocab=` reads it.
    return BertTokenizer(vocab=str(write_tiny_vocab(folder)))
