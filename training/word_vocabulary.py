"""A word-level BERT tokenizer built from a corpus' captions, for training from scratch where no pretrained
tokenizer is available (the synthetic benchmark offline). Real runs use the checkpoint's own tokenizer."""

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from transformers import BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_word_tokenizer(captions: Iterable[str], folder: str | Path, min_count: int = 1) -> BertTokenizer:
    """
    A `BertTokenizer` whose vocabulary is every lower-cased word (and punctuation mark) occurring at least
    `min_count` times in `captions`, plus BERT's special tokens (ids 0-4: [PAD] [UNK] [CLS] [SEP] [MASK]).
    Saved in `folder` so the processor carries it.
    """
    counts = Counter(token for caption in captions for token in re.findall(r"\w+|[^\w\s]", caption.lower()))
    words = sorted(word for word, count in counts.items() if count >= min_count)
    if not words:
        raise ValueError("build_word_tokenizer: the captions contain no words.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = SPECIAL_TOKENS + words
    # Built from memory, never read back from `folder`: processes that share an output folder (one per rank under
    # `accelerate launch`) rewrite these files, and a half-written vocab.txt read back gave a 5-token vocabulary.
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(tokens)})
    # save_pretrained writes no vocab.txt for an in-memory vocabulary; written atomically for the same reason.
    partial = folder / f"vocab.txt.{os.getpid()}.tmp"
    partial.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    os.replace(partial, folder / "vocab.txt")
    tokenizer.save_pretrained(folder)
    return tokenizer


__all__ = ["build_word_tokenizer", "SPECIAL_TOKENS"]
