"""
A memo of the text tower's frozen text-only stage, for training.

When the text embeddings and every text-only layer (those below `fusion_layer`) are frozen and dropout there is 0,
the text-only features of a caption (`T2V2TTextTransformer.encode_text`) are a fixed function of its token ids:
computing them again each time the caption comes back in a batch repeats the same work. `FrozenTextStageCache` keeps
each caption's features (its real tokens only, in the stage's dtype) the first time they are computed and assembles later
batches from the memo; the trained parts above (the text projection, the fusion layers) run as before. On the
quickstart the text-only stage was about a third of a CPU training step.

Hand-written: no library memoises a sub-module's forward by input value. Token ids are the key, so a caption
tokenised the same way always hits and anything else (a masked MLM caption) is simply a new entry.
"""

import logging

import torch

logger = logging.getLogger(__name__)


class FrozenTextStageCache:
    """
    Stands in for `text_model.encode_text` (`install`): the same `(B, N, D)` features, taken from the memo where a
    row's caption was seen before and computed (without autograd: nothing there is trained) where not. Padded
    positions come back as zeros; every use of text features masks them out (`attention_mask`).

    `max_mb`: memory for the memo; once full, new captions are computed every time (logged once).
    """

    def __init__(self, text_model, max_mb: float):
        check_frozen_text_stage(text_model)
        if max_mb <= 0:
            raise ValueError(f"FrozenTextStageCache needs max_mb > 0, got {max_mb}.")
        self.text_model = text_model
        self.compute = text_model.encode_text  # the stage itself, bound before `install` replaces it
        self.max_bytes = int(max_mb * 2**20)
        self.stored_bytes = 0
        self.memo: dict[bytes, torch.Tensor] = {}
        self.hits = self.misses = 0
        self._full_logged = False

    def install(self) -> "FrozenTextStageCache":
        """Makes `text_model.encode_text` read through this memo (an instance attribute shadowing the method)."""
        self.text_model.encode_text = self
        return self

    def uninstall(self) -> None:
        self.text_model.__dict__.pop("encode_text", None)

    @staticmethod
    def _keys(input_ids: torch.Tensor, lengths: torch.Tensor, token_type_ids) -> list[bytes]:
        rows = input_ids.cpu()
        types = None if token_type_ids is None else token_type_ids.cpu()
        keys = []
        for row, length in enumerate(lengths.tolist()):
            key = rows[row, :length].numpy().tobytes()
            if types is not None and bool(types[row, :length].any()):
                key += b"|" + types[row, :length].numpy().tobytes()
            keys.append(key)
        return keys

    def __call__(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        lengths = attention_mask.sum(dim=1)
        positions = torch.arange(input_ids.shape[1], device=attention_mask.device)
        right_padded = bool(((positions < lengths[:, None]) == attention_mask.bool()).all())
        if not right_padded or not len(input_ids):  # a key needs the caption's tokens as one prefix
            with torch.no_grad():
                return self.compute(input_ids, attention_mask, token_type_ids)
        keys = self._keys(input_ids, lengths, token_type_ids)
        missing = [row for row, key in enumerate(keys) if key not in self.memo]
        unstored = self._compute_and_store(input_ids, attention_mask, token_type_ids, missing, lengths, keys) \
            if missing else {}
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        rows = [self.memo[key] if key in self.memo else unstored[key] for key in keys]
        states = rows[0].new_zeros((len(rows), input_ids.shape[1], rows[0].shape[-1]))
        for row, stored in enumerate(rows):
            states[row, :len(stored)] = stored
        return states

    def _compute_and_store(self, input_ids, attention_mask, token_type_ids, missing, lengths, keys) -> dict:
        """Computes rows `missing` and stores them while the memo has room; returns those it had no room for."""
        index = torch.tensor(missing, device=input_ids.device)
        longest = int(lengths[index].max())
        with torch.no_grad():
            computed = self.compute(input_ids[index, :longest], attention_mask[index, :longest],
                                    None if token_type_ids is None else token_type_ids[index, :longest])
        unstored = {}
        for position, row in enumerate(missing):
            features = computed[position, :int(lengths[row])].clone()
            size = features.numel() * features.element_size()
            if self.stored_bytes + size <= self.max_bytes:
                self.memo[keys[row]] = features
                self.stored_bytes += size
            else:
                unstored[keys[row]] = features
                if not self._full_logged:
                    logger.warning("The frozen text-stage cache is full (%d captions, %.0f MB): captions not in it "
                                   "are computed every time they come back.", len(self.memo),
                                   self.stored_bytes / 2**20)
                    self._full_logged = True
        return unstored


def check_frozen_text_stage(text_model) -> None:
    """A clear error unless the text-only stage (embeddings, layers below `fusion_layer`) is frozen and dropout-free,
    the condition under which its features are a fixed function of the token ids."""
    config = text_model.config
    stage = ("embeddings.", *(f"encoder.layer.{index}." for index in range(text_model.fusion_layer)))
    trained = [name for name, parameter in text_model.named_parameters()
               if name.startswith(stage) and parameter.requires_grad]
    if trained:
        raise ValueError(f"Caching the frozen text stage needs the text embeddings and all {text_model.fusion_layer} "
                         f"text-only layers frozen (freeze_text_layers {text_model.fusion_layer}); "
                         f"{len(trained)} parameters there are trained, e.g. {trained[0]!r}.")
    dropout = {name: getattr(config, name) for name in ("hidden_dropout_prob", "attention_probs_dropout_prob")}
    if any(value > 0 for value in dropout.values()):
        raise ValueError(f"Caching the frozen text stage needs its dropout off (text_config {dropout}): with "
                         "dropout, a caption's features differ from one step to the next.")


__all__ = ["FrozenTextStageCache", "check_frozen_text_stage"]
