"""Caption cleaning as VindLU/Singularity do it before tokenising, so checkpoints see the text they were
trained on: lower-case, drop punctuation, split hyphenated and slashed words, optionally cap the word count."""

import re

_DROPPED = re.compile(r"[,.'!?\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")


def clean_caption(text: str, max_words: int | None = None) -> str:
    """
    Example:

    ```python
    >>> clean_caption("A man's red-hot guitar solo!  (Live)")
    'a mans red hot guitar solo live'
    ```
    """
    if not isinstance(text, str):
        raise TypeError(f"A caption must be a string, got {type(text).__name__}: {text!r}.")
    text = _DROPPED.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _SPACES.sub(" ", text).strip()
    if max_words is not None:
        text = " ".join(text.split(" ")[:max_words])
    return text


__all__ = ["clean_caption"]
