"""The word-level tokenizer that from-scratch models train with (training/word_vocabulary.py)."""

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from training.word_vocabulary import SPECIAL_TOKENS, build_word_tokenizer

CAPTIONS = ["A red box moves left, then a blue ball jumps.", "the red cone spins", "a red box"]


def test_vocabulary_is_the_special_tokens_then_every_word_sorted(tmp_path):
    tokenizer = build_word_tokenizer(CAPTIONS, tmp_path / "tok")
    words = sorted({",", ".", "a", "ball", "blue", "box", "cone", "jumps", "left", "moves", "red", "spins", "the",
                    "then"})
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))] == SPECIAL_TOKENS + words
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id,
            tokenizer.mask_token_id) == (0, 1, 2, 3, 4)
    red, box = 5 + words.index("red"), 5 + words.index("box")
    assert tokenizer("A RED box")["input_ids"] == [2, 5 + words.index("a"), red, box, 3]  # lower-cased
    assert tokenizer.tokenize("a red dog") == ["a", "red", "[UNK]"]
    common = build_word_tokenizer(CAPTIONS, tmp_path / "common", min_count=3)  # "a" 3 times, "red" 3 times
    assert [common.convert_ids_to_tokens(i) for i in range(len(common))] == SPECIAL_TOKENS + ["a", "red"]


def test_saved_folder_reloads_to_the_same_tokenizer(tmp_path):
    tokenizer = build_word_tokenizer(CAPTIONS, tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "vocab.txt").read_text().splitlines() == [
        tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))]
    for query in ["a red box", "The blue ball jumps, then spins.", "a dog"]:
        assert reloaded(query)["input_ids"] == tokenizer(query)["input_ids"]


def test_captions_without_words_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no words"):
        build_word_tokenizer(["", "   "], tmp_path / "tok")


RACE = """
import sys
from training.word_vocabulary import build_word_tokenizer
sizes = {len(build_word_tokenizer(%r, sys.argv[1])) for _ in range(100)}
print(sorted(sizes))
""" % (CAPTIONS,)


def test_processes_sharing_a_folder_each_get_the_whole_vocabulary(tmp_path):
    """Every rank under `accelerate launch` builds into the same output folder. Reading vocab.txt back while another
    process rewrote it gave a 5-token vocabulary about 1 call in 12; building from memory cannot."""
    root = Path(__file__).parents[1]
    command = [sys.executable, "-c", RACE, str(tmp_path / "shared")]
    runs = [subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["[19]", "[19]"]
