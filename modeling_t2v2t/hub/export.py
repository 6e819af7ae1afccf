"""Saving a model and its processor as a Hub-ready folder that loads with `trust_remote_code=True`.

Not part of the custom code itself: this file is never copied to the Hub (nothing there imports it).
"""

from pathlib import Path

from transformers.utils import logging

logger = logging.get_logger(__name__)

# Which Auto class each model class is registered under in a saved `auto_map`.
_AUTO_CLASS_OF = {
    "T2V2TModel": "AutoModel",
    "T2V2TForPreTraining": "AutoModelForPreTraining",
    "XPoolModel": "AutoModel",
    "CRETModel": "AutoModel",
}


def save_hub_folder(model, processor, save_directory: str | Path, safe_serialization: bool = True) -> Path:
    """
    Save `model` and `processor` (weights as safetensors, configs with `auto_map`, and the `.py` files they need)
    so that `AutoModel`/`AutoProcessor.from_pretrained(folder, trust_remote_code=True)` work in a process where
    this package is not installed.

    Example:

    ```python
    >>> save_hub_folder(model, processor, "t2v2t-msrvtt")
    >>> AutoModel.from_pretrained("t2v2t-msrvtt", trust_remote_code=True)
    ```
    """
    save_directory = Path(save_directory)
    auto_class = _AUTO_CLASS_OF.get(type(model).__name__)
    if auto_class is None:
        raise ValueError(f"No Auto class is known for {type(model).__name__}; expected one of {list(_AUTO_CLASS_OF)}.")
    # register_for_auto_class makes save_pretrained write `auto_map` and copy the class's file and its relative imports.
    model.config.register_for_auto_class()
    model.register_for_auto_class(auto_class)
    processor.video_processor.register_for_auto_class("AutoVideoProcessor")
    processor.register_for_auto_class("AutoProcessor")
    model.save_pretrained(save_directory, safe_serialization=safe_serialization)
    processor.save_pretrained(save_directory)
    logger.info("Saved a Hub-ready folder at %s: %s", save_directory, sorted(p.name for p in save_directory.iterdir()))
    return save_directory


__all__ = ["save_hub_folder"]
