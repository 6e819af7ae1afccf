"""Choosing the checkpoint to resume from, crash-safely.

`Trainer` writes `checkpoint-N/` in place: weights first, then optimizer, scheduler and RNG states, and
`trainer_state.json` last. A run killed during a save therefore leaves a folder without `trainer_state.json` (or with
a half-written one, or with cut-off weights), and `Trainer`'s own `resume_from_checkpoint=True` picks that newest
folder and fails. `newest_complete_checkpoint` passes over such folders, logging each, and returns the newest one
that is whole.
"""

import json
import logging
import os
import re
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

logger = logging.getLogger(__name__)

TRAINER_STATE_NAME = "trainer_state.json"
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def _safetensors_problem(path: Path) -> str | None:
    try:  # reads the header only; a file cut short no longer covers the tensors its header lists
        with safe_open(str(path), framework="pt"):
            return None
    except (SafetensorError, OSError) as error:
        return f"{path.name} is damaged ({error})"


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why `folder` cannot be resumed from (a sentence), or `None` if it is complete: a readable
    `trainer_state.json` at the folder's step (written last by `Trainer`) and whole model weights."""
    folder = Path(folder)
    state_path = folder / TRAINER_STATE_NAME
    if not state_path.is_file():
        return f"no {TRAINER_STATE_NAME} (the run probably stopped while saving it)"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{TRAINER_STATE_NAME} is not readable JSON ({error})"
    match = _CHECKPOINT.match(folder.name)
    if not isinstance(state, dict) or (match and state.get("global_step") != int(match.group(1))):
        return f"{TRAINER_STATE_NAME} does not describe step {match.group(1) if match else '?'}"
    if (folder / SAFE_WEIGHTS_NAME).is_file():
        return _safetensors_problem(folder / SAFE_WEIGHTS_NAME)
    for index_name in (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME):
        if (folder / index_name).is_file():
            try:
                shards = sorted(set(json.loads((folder / index_name).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                return f"{index_name} is not a readable weight index ({error})"
            missing = [shard for shard in shards if not (folder / shard).is_file()]
            if missing:
                return f"weight shards listed in {index_name} are missing: {missing}"
            if index_name == SAFE_WEIGHTS_INDEX_NAME:
                problems = [_safetensors_problem(folder / shard) for shard in shards]
                return next((problem for problem in problems if problem), None)
            return None
    if (folder / WEIGHTS_NAME).is_file():
        return None
    return "no model weights"


def newest_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` folder of `output_dir` that is complete (see `checkpoint_problem`), or `None`.
    Each newer, incomplete one it passes over is logged with the reason."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    folders = [(int(match.group(1)), path) for path in output_dir.iterdir()
               if path.is_dir() and (match := _CHECKPOINT.match(path.name))]
    for _, folder in sorted(folders, reverse=True):
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        logger.warning("Passing over the incomplete checkpoint %s: %s.", folder, problem)
    return None


def resolve_resume_checkpoint(resume, output_dir: str | os.PathLike):
    """`TrainingArguments.resume_from_checkpoint` made crash-safe: `"true"`/`"last"`/`True` become the newest
    complete checkpoint in `output_dir` (a `ValueError` says so when there is none); a path or `None`/`False` is
    returned as given."""
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = True
    if resume is not True:
        return resume
    checkpoint = newest_complete_checkpoint(output_dir)
    if checkpoint is None:
        raise ValueError(
            f"--resume_from_checkpoint true: {output_dir} holds no complete checkpoint to resume from (see the "
            "warnings above for incomplete ones). Start without --resume_from_checkpoint, or pass a checkpoint path."
        )
    logger.info("Resuming from %s, the newest complete checkpoint in %s.", checkpoint, output_dir)
    return checkpoint


__all__ = ["checkpoint_problem", "newest_complete_checkpoint", "resolve_resume_checkpoint"]
