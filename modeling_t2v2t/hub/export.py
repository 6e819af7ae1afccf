"""Saving a model and its processor as a Hub-ready folder that loads with `trust_remote_code=True`.

Importing `modeling_t2v2t` registers every config, model and processor class for the Auto API at class level
(`register_for_auto_class`), so a plain `save_pretrained` already writes `auto_map` and copies the code files; this
helper only saves both halves into one folder and checks that the registration is in place.
Not part of the custom code itself: this file is never copied to the Hub (nothing there imports it).
"""

from pathlib import Path

from transformers.utils import logging

logger = logging.get_logger(__name__)


def save_hub_folder(model, processor, save_directory: str | Path) -> Path:
    """
    Save `model` and `processor` (weights as safetensors, configs with `auto_map`, and the `.py` files they need)
    so that `AutoModel`/`AutoProcessor.from_pretrained(folder, trust_remote_code=True)` work in a process where
    this package is not installed. Equivalent to `model.save_pretrained(folder)` + `processor.save_pretrained(folder)`.

    Example:

    ```python
    >>> save_hub_folder(model, processor, "t2v2t-msrvtt")
    >>> AutoModel.from_pretrained("t2v2t-msrvtt", trust_remote_code=True)
    ```
    """
    save_directory = Path(save_directory)
    for part in (model, model.config, processor, processor.video_processor):
        if getattr(type(part), "_auto_class", None) is None:
            raise ValueError(f"{type(part).__name__} is not registered for the Auto API, so its saved folder would "
                             "have no auto_map and no code; it must be a class of modeling_t2v2t (importing the "
                             "package registers them).")
    model.save_pretrained(save_directory)  # transformers v5 always writes safetensors
    processor.save_pretrained(save_directory)
    logger.info("Saved a Hub-ready folder at %s: %s", save_directory, sorted(p.name for p in save_directory.iterdir()))
    return save_directory


__all__ = ["save_hub_folder"]
