"""Test-only helpers for the synthetic benchmark: decoding a rendered file whole, and finding which events a caption
mentions from its words alone (an independent check of the generator's own bookkeeping)."""

import re

import av
import numpy as np

from processing.synthetic.captions import ACTION_PHRASES, COLOUR_WORDS, SHAPE_WORDS


def read_mp4(path: str) -> np.ndarray:
    """Decodes every frame of a video file to a uint8 array (T, H, W, 3)."""
    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24", threads=1) for frame in container.decode(video=0)])


def mentioned_events(sentence: str, scene: dict) -> list[int]:
    """
    Indices of the events of `scene` whose subject (colour and shape words) and action phrase occur in `sentence`.
    """
    text = sentence.lower()

    def has(words):
        return any(re.search(rf"\b{re.escape(word)}\b", text) for word in words)

    found = []
    for index, event in enumerate(scene["events"]):
        obj = scene["objects"][event["object"]]
        if has(COLOUR_WORDS[obj["colour"]]) and has(SHAPE_WORDS[obj["shape"]]) and has(ACTION_PHRASES[event["action"]]):
            found.append(index)
    return found
