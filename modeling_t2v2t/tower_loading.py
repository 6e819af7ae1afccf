"""Initialising T2V2T from transformers image (BEiT, ViT) and text (BERT) checkpoints.

The towers load through `AutoModel`, so transformers itself converts old Hub key names (`encoder.layer.N.attention
.attention.query`) to its current ones; our modules mirror those names, so the copy is a prefix rename.
"""

from transformers.utils import logging

logger = logging.get_logger(__name__)

_SHARED_VISION_FIELDS = (
    "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps",
    "initializer_range",
)
_BEIT_FIELDS = (
    "layer_scale_init_value", "use_absolute_position_embeddings", "use_relative_position_bias",
    "use_shared_relative_position_bias", "use_mean_pooling", "drop_path_rate",
)
_BERT_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
    "initializer_range", "layer_norm_eps", "pad_token_id",
)
# Tower weights T2V2T has no use for: ViT/BERT's tanh poolers and BEiT's masked-image-modelling token.
_UNUSED_TOWER_PREFIXES = ("pooler.dense.", "embeddings.mask_token")


def _square_size(value, field: str, source: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"{source}: {field}={value} is not square; T2V2T supports square images only.")
        value = value[0]
    return int(value)


def vision_config_from_image_config(image_config, overrides: dict) -> dict:
    """`T2V2TVisionConfig` fields equivalent to a transformers `BeitConfig` or `ViTConfig`."""
    model_type = image_config.model_type
    if model_type not in ("beit", "vit"):
        raise ValueError(
            f"The vision checkpoint is a {model_type!r} model; T2V2T's video encoder loads 'beit' or 'vit' ones."
        )
    fields = {name: getattr(image_config, name) for name in _SHARED_VISION_FIELDS}
    fields["image_size"] = _square_size(fields["image_size"], "image_size", model_type)
    fields["patch_size"] = _square_size(fields["patch_size"], "patch_size", model_type)
    if model_type == "beit":
        fields.update({name: getattr(image_config, name) for name in _BEIT_FIELDS})
        fields.update(qkv_bias=True, key_bias=False)
    else:  # vit
        qkv_bias = getattr(image_config, "qkv_bias", True)
        fields.update(
            qkv_bias=qkv_bias, key_bias=qkv_bias, layer_scale_init_value=0.0, use_absolute_position_embeddings=True,
            use_relative_position_bias=False, use_shared_relative_position_bias=False, use_mean_pooling=False,
        )
    fields.update(overrides)
    if fields.get("patch_embedding", "linear") != "linear":
        raise ValueError(
            f"vision_config_overrides sets patch_embedding={fields['patch_embedding']!r}, but a pretrained "
            f"{model_type} checkpoint has a linear patch projection: a convolutional stem is for video towers "
            "trained from scratch (vision_model_name_or_path=None)."
        )
    if fields.get("frame_difference_channels", False):
        raise ValueError(
            f"vision_config_overrides sets frame_difference_channels=True, but a pretrained {model_type} checkpoint's "
            "patch projection takes the 3 colour channels only: frame differences are for video towers trained "
            "from scratch (vision_model_name_or_path=None)."
        )
    return fields


def text_config_from_bert_config(bert_config, tokenizer=None) -> dict:
    """`T2V2TTextConfig` fields equivalent to a `BertConfig`; special token ids from the tokenizer if given."""
    if bert_config.model_type != "bert":
        raise ValueError(f"The text checkpoint is a {bert_config.model_type!r} model; T2V2T loads 'bert' ones.")
    fields = {name: getattr(bert_config, name) for name in _BERT_FIELDS}
    for field in ("cls_token_id", "sep_token_id", "mask_token_id", "pad_token_id"):
        token_id = getattr(tokenizer, field, None) if tokenizer is not None else None
        if token_id is not None:
            fields[field] = token_id
        elif field != "pad_token_id":
            logger.warning("No tokenizer with %s beside the text checkpoint; set text_config.%s yourself.",
                           field, field)
            fields[field] = None
    return fields


def load_tower_configs(vision_name_or_path: str | None, text_name_or_path: str, vision_overrides: dict,
                       text_overrides: dict | None = None):
    """
    Loads both towers with `AutoModel`; returns T2V2T sub-config fields and the towers' state dicts. With
    `vision_name_or_path=None` the video tower is not loaded: `vision_overrides` are then its whole config (trained
    from scratch) and its state dict is empty. `text_overrides` change text config fields, e.g.
    `{"num_hidden_layers": 4}` keeps the checkpoint's first 4 layers.
    """
    from transformers import AutoModel, AutoTokenizer

    text = AutoModel.from_pretrained(text_name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(text_name_or_path)
    except (OSError, ValueError) as error:  # a weights-only folder: ids must then be set by hand
        logger.warning("Could not load a tokenizer from %s (%s).", text_name_or_path, error)
        tokenizer = None
    text_config = {**text_config_from_bert_config(text.config, tokenizer), **(text_overrides or {})}
    if vision_name_or_path is None:
        return dict(vision_overrides), text_config, {}, text.state_dict()
    vision = AutoModel.from_pretrained(vision_name_or_path)
    vision_config = vision_config_from_image_config(vision.config, vision_overrides)
    return vision_config, text_config, vision.state_dict(), text.state_dict()


def load_tower_weights(model, vision_state: dict, text_state: dict) -> dict:
    """
    Copies the towers' weights into `model` (a T2V2T model or its pretraining wrapper). Returns
    `{"missing_keys": T2V2T weights left as initialised, "unexpected_keys": tower weights not used}`.
    A shape mismatch raises `ValueError` naming the weight.
    """
    base = model.base_model
    mapped, unused = {}, []
    for prefix, state in (("vision_model.", vision_state), ("text_model.", text_state)):
        for key, value in state.items():
            if key.startswith(_UNUSED_TOWER_PREFIXES) or key.startswith("pooler.") and prefix == "text_model.":
                unused.append(prefix + key)
            else:
                mapped[prefix + key] = value
    own = base.state_dict()
    for key, value in mapped.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(
                f"Cannot copy tower weight {key}: checkpoint shape {tuple(value.shape)}, "
                f"T2V2T shape {tuple(own[key].shape)} (do the config overrides change the tower's size?)."
            )
    result = base.load_state_dict(mapped, strict=False)
    info = {"missing_keys": sorted(result.missing_keys), "unexpected_keys": sorted(unused + result.unexpected_keys)}
    if info["unexpected_keys"]:
        logger.info("Tower weights not used by T2V2T: %s", info["unexpected_keys"])
    return info


__all__ = ["vision_config_from_image_config", "text_config_from_bert_config", "load_tower_configs",
           "load_tower_weights"]
