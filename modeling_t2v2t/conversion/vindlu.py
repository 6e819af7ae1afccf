"""Converting an official VindLU checkpoint (Cheng et al., CVPR 2023; github.com/klauscc/VindLU) into T2V2T.

VindLU is T2V2T's `fusion_mode="v2t"`: a BEiT video encoder with a TimeSformer-style temporal attention after each
block (VindLU's "timesformer" temporal block), a BERT text encoder whose layers from `fusion_layer` on cross-attend
to the video, VTC projections, a temperature and a VTM head (plus BERT's MLM head in pretraining checkpoints).
Only the names differ; VindLU's BEiT is transformers 4's, ours follows transformers 5:

VindLU key (`torch.load(path)["model"]`)                       -> T2V2T key
  vision_encoder.encoder.layer.N.attention.attention.{query,key,value} -> vision_model.layers.N.attention.{q,k,v}_proj
  vision_encoder.encoder.layer.N.attention.output.dense          -> vision_model.layers.N.attention.o_proj
  vision_encoder.encoder.layer.N.{intermediate,output}.dense     -> vision_model.layers.N.mlp.{fc1,fc2}
  ...layer.N.attention.attention.relative_position_bias.*_table  -> vision_model.layers.N.relative_position_bias.*
  ...layer.N.temp_model.temporal_attn.in_proj_{weight,bias}      -> ...temporal_attention.attention.{q,k,v}_proj
  ...layer.N.temp_model.{norm,scale,temporal_attn.out_proj}      -> ...temporal_attention.{norm,gate,attention.o_proj}
  text_encoder[.bert].{embeddings,encoder}.*                     -> text_model.{embeddings,encoder}.* (BERT names)
  text_encoder.cls.predictions.*                                 -> cls.predictions.* (T2V2TForPreTraining)
  vision_layernorm, vision_proj, text_proj, temp, itm_head       -> the same names

T2V2T's text→video layers (`t2v_layers.*`) do not exist in VindLU: they are newly initialised and reported as
missing keys. With `fusion_mode="v2t"` the converted model computes VindLU's function (VTC similarity, VTM logits,
at every frame count) and scores pairs with VindLU's match logit (`rerank_score="vtm"`); README "Fidelity" lists
what is and is not identical. Resizing follows VindLU: the temporal table is cut or padded with zero rows, BEiT's
relative position tables are resampled by its geometric-progression cubic rule.

```python
>>> from modeling_t2v2t.conversion.vindlu import convert_vindlu_checkpoint, save_converted
>>> conversion = convert_vindlu_checkpoint("vindlu_5m/ckpt_best.pth", config_overrides={"fusion_mode": "t2v2t"})
>>> print(conversion.summary())
>>> save_converted(conversion, "checkpoints/t2v2t-pretrained-5m", tokenizer="bert-base-uncased")
```

Not part of the custom code: no model file imports this module, so it never travels to the Hub.
"""

import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers.utils import logging

from ..configuration_t2v2t import T2V2TConfig
from ..modeling_t2v2t import T2V2TForPreTraining, T2V2TModel

logger = logging.get_logger(__name__)

VISION_PREFIX = "vision_encoder."
MLM_PREFIX = "text_encoder.cls.predictions."

# VindLU saves its training config (an EasyDict) beside the weights. The weights-only unpickler refuses unknown
# classes, so that one name is read as an OrderedDict: metadata only, and no VindLU code is imported or executed.
_VINDLU_PICKLED_CLASSES = [(OrderedDict, "utils.easydict.EasyDict")]

# One-to-one renames inside the vision encoder (after `vision_encoder.` / before `vision_model.`).
_VISION_RENAMES = [(re.compile(pattern), replacement) for pattern, replacement in (
    (r"embeddings\.(cls_token|position_embeddings|temporal_position_embeddings)", r"embeddings.\1"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (r"encoder\.relative_position_bias\.relative_position_bias_table",
     "shared_position_bias.relative_position_bias_table"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.query\.(weight|bias)", r"layers.\1.attention.q_proj.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.key\.(weight|bias)", r"layers.\1.attention.k_proj.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.value\.(weight|bias)", r"layers.\1.attention.v_proj.\2"),
    # BEiT's original (timm/unilm) form: fused qkv weight, separate query and value biases, no key bias.
    (r"encoder\.layer\.(\d+)\.attention\.attention\.q_bias", r"layers.\1.attention.q_proj.bias"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.v_bias", r"layers.\1.attention.v_proj.bias"),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.relative_position_bias\.relative_position_bias_table",
     r"layers.\1.relative_position_bias.relative_position_bias_table"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"layers.\1.attention.o_proj.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"layers.\1.mlp.fc1.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"layers.\1.mlp.fc2.\2"),
    (r"encoder\.layer\.(\d+)\.(layernorm_before|layernorm_after)\.(weight|bias)", r"layers.\1.\2.\3"),
    (r"encoder\.layer\.(\d+)\.(lambda_1|lambda_2)", r"layers.\1.\2"),
    (r"encoder\.layer\.(\d+)\.temp_model\.norm\.(weight|bias)", r"layers.\1.temporal_attention.norm.\2"),
    (r"encoder\.layer\.(\d+)\.temp_model\.temporal_attn\.out_proj\.(weight|bias)",
     r"layers.\1.temporal_attention.attention.o_proj.\2"),
    (r"encoder\.layer\.(\d+)\.temp_model\.scale", r"layers.\1.temporal_attention.gate"),
    (r"(pooler\.layernorm|layernorm)\.(weight|bias)", r"\1.\2"),
)]
# Fused q/k/v tensors split into thirds; `{}` is q, k or v.
_VISION_SPLITS = [(re.compile(pattern), replacement) for pattern, replacement in (
    (r"encoder\.layer\.(\d+)\.attention\.attention\.qkv\.(weight|bias)", r"layers.\1.attention.{}_proj.\2"),
    (r"encoder\.layer\.(\d+)\.temp_model\.temporal_attn\.in_proj_(weight|bias)",
     r"layers.\1.temporal_attention.attention.{}_proj.\2"),
)]
# The text encoder keeps BERT's names (ALBEF/VindLU's `crossattention` included): copied as they are.
_TEXT_NAMES = re.compile(
    r"embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.weight"
    r"|embeddings\.LayerNorm\.(weight|bias)"
    r"|encoder\.layer\.\d+\.(attention|crossattention)\.self\.(query|key|value)\.(weight|bias)"
    r"|encoder\.layer\.\d+\.(attention|crossattention)\.output\.(dense|LayerNorm)\.(weight|bias)"
    r"|encoder\.layer\.\d+\.intermediate\.dense\.(weight|bias)"
    r"|encoder\.layer\.\d+\.output\.(dense|LayerNorm)\.(weight|bias)"
)
_TOP_NAMES = re.compile(r"(vision_layernorm|vision_proj|text_proj|itm_head)\.(weight|bias)|temp")
_MLM_NAMES = re.compile(r"transform\.(dense|LayerNorm)\.(weight|bias)|bias|decoder\.weight")
# Buffers and aliases T2V2T recomputes: not weights, so neither converted nor "unexpected".
_DERIVED = re.compile(r".*\.(relative_position_index|position_ids)$|text_encoder\.cls\.predictions\.decoder\.bias$")
# VindLU's timesformer block builds a Linear it never calls in forward: dropping it changes nothing.
_UNUSED_TEMPORAL = re.compile(r".*\.temp_model\.linear\.(weight|bias)$")
# VindLU options T2V2T cannot represent: refusing beats silently computing something else.
_UNSUPPORTED = (
    (re.compile(r".*(prompt_tokens|prompt_bias_table)$"), "learnable prompt tokens (add_k_prompts > 0)"),
    (re.compile(r".*\.temp_model\..*"), "a temporal block other than VindLU's default 'timesformer'"),
)
_LAYER_INDEX = re.compile(r"encoder\.layer\.(\d+)\.")


# ----- reading ---------------------------------------------------------------------------------------------------
def load_vindlu_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """
    The model weights of a VindLU checkpoint, read with `torch.load(weights_only=True)` (no code from the file runs).
    Accepts VindLU's `{"model": state_dict, "config": ..., "optimizer": ...}` or a bare state dict, and strips a
    DDP `module.` prefix. Raises `FileNotFoundError`/`ValueError` naming the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VindLU checkpoint {path} does not exist.")
    try:
        with torch.serialization.safe_globals(_VINDLU_PICKLED_CLASSES):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path} could not be read as a weights-only torch checkpoint ({type(error).__name__}: {reason}). "
            "Is it a corrupted download, or not a torch.save file?"
        ) from error

    if isinstance(checkpoint, dict) and "model" in checkpoint:
        state = checkpoint["model"]
    elif isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        logger.info("%s is a bare state dict (no 'model' entry); converting it as VindLU weights.", path)
        state = checkpoint
    else:
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} has no 'model' entry (found {keys}); VindLU checkpoints store their weights "
                         "under checkpoint['model'].")
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: checkpoint['model'] must map weight names to tensors.")
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    if not any(key.startswith((VISION_PREFIX, "text_encoder.")) for key in state):
        raise ValueError(
            f"{path} does not look like a VindLU checkpoint: no vision_encoder.* or text_encoder.* weights "
            f"(first keys: {sorted(state)[:5]})."
        )
    return dict(state)


def _text_prefix(state: dict) -> str:
    # Pretraining saves BertForMaskedLM (text_encoder.bert.*), retrieval fine-tuning BertModel (text_encoder.*).
    return "text_encoder.bert." if any(key.startswith("text_encoder.bert.") for key in state) else "text_encoder."


def _layer_indices(state: dict, prefix: str) -> list[int]:
    indices = {int(m.group(1)) for key in state if key.startswith(prefix)
               for m in [_LAYER_INDEX.match(key[len(prefix):])] if m}
    return sorted(indices)


def _require(state: dict, key: str) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"The VindLU checkpoint has no {key!r}; cannot infer the model size from it.")
    return state[key]


def _table_side(rows: int, key: str) -> int:
    side = (math.isqrt(rows - 3) + 1) // 2
    if (2 * side - 1) ** 2 + 3 != rows:
        raise ValueError(f"{key} has {rows} rows, not (2*side-1)**2 + 3 for any patch grid side.")
    return side


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) and key.endswith("_config") else value
    return merged


def infer_config_fields(state: dict) -> dict:
    """`T2V2TConfig` fields sized like the checkpoint's weights (layers, widths, heads, patch grid, frames, ...)."""
    vision_layers = _layer_indices(state, VISION_PREFIX)
    text_prefix = _text_prefix(state)
    text_layers = _layer_indices(state, text_prefix)
    if not vision_layers or not text_layers:
        raise ValueError("The VindLU checkpoint has no vision_encoder.encoder.layer.* or text_encoder encoder layers.")
    layer0 = f"{VISION_PREFIX}encoder.layer.0."
    layer_table = layer0 + "attention.attention.relative_position_bias.relative_position_bias_table"
    shared_table = VISION_PREFIX + "encoder.relative_position_bias.relative_position_bias_table"

    hidden = _require(state, VISION_PREFIX + "embeddings.cls_token").shape[-1]
    projection = _require(state, VISION_PREFIX + "embeddings.patch_embeddings.projection.weight")  # (D, C, p, p)
    patch_size, num_channels = projection.shape[-1], projection.shape[1]
    table_key = next((key for key in (layer_table, shared_table) if key in state), None)
    absolute = state.get(VISION_PREFIX + "embeddings.position_embeddings")
    if table_key is not None:
        side = _table_side(state[table_key].shape[0], table_key)
    elif absolute is not None:
        side = math.isqrt(absolute.shape[1] - 1)
    else:
        side = 224 // patch_size
        logger.warning("No position embedding or bias table in the checkpoint: assuming 224x224 frames.")
    # The bias table has one column per head; without one, VindLU's convention of 64-wide heads.
    vision_heads = state[table_key].shape[1] if table_key is not None else max(hidden // 64, 1)
    temporal = state.get(VISION_PREFIX + "embeddings.temporal_position_embeddings")
    attention = layer0 + "attention.attention."
    vision = dict(
        image_size=side * patch_size, patch_size=patch_size, num_channels=num_channels, hidden_size=hidden,
        num_hidden_layers=len(vision_layers), num_attention_heads=vision_heads,
        intermediate_size=_require(state, layer0 + "intermediate.dense.weight").shape[0],
        qkv_bias=(attention + "query.bias") in state or (attention + "q_bias") in state,
        key_bias=(attention + "key.bias") in state,
        layer_scale_init_value=0.1 if (layer0 + "lambda_1") in state else 0.0,
        use_absolute_position_embeddings=absolute is not None,
        use_relative_position_bias=layer_table in state,
        use_shared_relative_position_bias=shared_table in state,
        use_mean_pooling=(VISION_PREFIX + "pooler.layernorm.weight") in state,
        use_temporal_attention=any(".temp_model." in key for key in state),
        num_frames=temporal.shape[1] if temporal is not None else 4,
    )

    text_hidden = _require(state, text_prefix + "embeddings.word_embeddings.weight").shape[1]
    if text_hidden % 64 == 0:
        text_heads = text_hidden // 64  # BERT's convention (base 12, large 16); not stored in the weights
    elif text_hidden == hidden:
        text_heads = vision_heads
    else:
        raise ValueError(f"Cannot infer the text encoder's number of heads for hidden size {text_hidden}; give "
                         "text_config.num_attention_heads in the config overrides.")
    vocab_size = state[text_prefix + "embeddings.word_embeddings.weight"].shape[0]
    text = dict(
        vocab_size=vocab_size, hidden_size=text_hidden, num_hidden_layers=len(text_layers),
        num_attention_heads=text_heads,
        intermediate_size=_require(state, f"{text_prefix}encoder.layer.0.intermediate.dense.weight").shape[0],
        max_position_embeddings=_require(state, text_prefix + "embeddings.position_embeddings.weight").shape[0],
        type_vocab_size=_require(state, text_prefix + "embeddings.token_type_embeddings.weight").shape[0],
    )
    # bert-base-uncased's special ids (T2V2TTextConfig's defaults) only make sense in a vocabulary that holds them.
    for name, default in (("cls_token_id", 101), ("sep_token_id", 102), ("mask_token_id", 103)):
        if default >= vocab_size:
            logger.warning("Vocabulary of %d tokens: set text_config.%s yourself (config overrides).", vocab_size, name)
            text[name] = None
    cross = _layer_indices({k: v for k, v in state.items() if ".crossattention." in k}, text_prefix)
    fields = dict(
        vision_config=vision, text_config=text,
        fusion_mode="t2v2t" if cross else "none", fusion_layer=cross[0] if cross else len(text_layers),
        embed_dim=_require(state, "vision_proj.weight").shape[0],
    )
    if "temp" in state:  # only the initial value of the config; the learned one is copied with the weights
        fields["temp"] = min(max(float(state["temp"]), 0.001), 0.5)
    return fields


def vindlu_config(state: dict, overrides: dict | None = None) -> T2V2TConfig:
    """A `T2V2TConfig` sized like the checkpoint, with `overrides` (T2V2TConfig fields; sub-config dicts merged)."""
    # A T2V2T config.json may serve as overrides: its bookkeeping entries are not config fields.
    overrides = {key: value for key, value in (overrides or {}).items()
                 if key not in ("architectures", "auto_map", "model_type", "transformers_version", "dtype",
                                "torch_dtype")}
    fields = _merge(infer_config_fields(state), overrides)
    for name in ("vision_config", "text_config"):
        value = fields.get(name)
        if value is not None and not isinstance(value, dict):
            fields[name] = value.to_dict()
    if fields.get("fusion_mode") == "v2t" and "rerank_score" not in overrides:
        # VindLU ranks its top-k candidates by the match logit itm_head(...)[:, 1] alone.
        fields["rerank_score"] = "vtm"
    config = T2V2TConfig(**fields)
    temporal_heads = config.vision_config.hidden_size // 64
    if config.vision_config.use_temporal_attention and temporal_heads != config.vision_config.num_attention_heads:
        logger.warning(
            "VindLU's temporal attention uses hidden_size // 64 = %d heads, T2V2T uses num_attention_heads = %d: "
            "the converted temporal attention computes a different function until fine-tuned.",
            temporal_heads, config.vision_config.num_attention_heads)
    return config


# ----- resizing ----------------------------------------------------------------------------------------------------
# The rule each kind of resized weight follows; `conversion_report.json` names it for every resized weight.
RESIZE_RULES = {
    "relative_position_bias_table": (
        "beit_geometric_progression_cubic: BEiT's and VindLU's interpolate_pos_relative_bias_beit (offsets on a "
        "geometric progression, not-a-knot cubic spline as SciPy's interp2d kind='cubic'; [CLS] entries kept)"),
    "temporal_position_embeddings": (
        "vindlu_first_rows_then_zeros: VindLU's load_temp_embed_with_mismatch (the first rows for fewer frames; the "
        "checkpoint's rows followed by zero rows for more)"),
    "position_embeddings": "bicubic_align_corners_false: VindLU's interpolate_pos_embed on the patch grid, [CLS] kept",
    "text_position_embeddings": "first_rows: a shorter maximum caption length",
}


def geometric_progression_offsets(old_grid: int, new_grid: int) -> tuple[list[float], list[float]]:
    """
    BEiT's source and target coordinates for resizing an `old_grid`-wide grid of relative offsets to `new_grid`
    (both odd, `2 * side - 1`): the source offsets are spaced on a geometric progression 1, q, q², ... whose sum over
    half the old grid reaches half the new one (q found by bisection in [1.01, 1.5], as BEiT does), so short offsets
    keep their spacing and long ones stretch; the targets are the integers -new_grid//2 .. new_grid//2.
    """
    half, target_half = old_grid // 2, new_grid // 2

    def progression_sum(ratio: float) -> float:
        return (1.0 - ratio ** half) / (1.0 - ratio)

    left, right = 1.01, 1.5
    while right - left > 1e-6:
        ratio = (left + right) / 2.0
        if progression_sum(ratio) > target_half:
            right = ratio
        else:
            left = ratio
    distances, current = [], 1.0
    for i in range(half):
        distances.append(current)
        current += ratio ** (i + 1)
    source = [-d for d in reversed(distances)] + [0.0] + distances
    target = [float(offset) for offset in range(-target_half, target_half + 1)]
    return source, target


def not_a_knot_cubic_weights(knots, queries) -> torch.Tensor:
    """
    (len(queries), len(knots)) float64 matrix `W` such that `W @ y` evaluates, at `queries`, the not-a-knot cubic
    spline through `(knots, y)` (the spline SciPy's `interp2d(kind="cubic")` fits along each axis of a grid:
    FITPACK with s=0 places its interior knots at all but the two outermost points on each side). Queries outside
    the knots take the nearest end value, as interp2d does. Hand-written because SciPy removed `interp2d` and is not
    a dependency; the spline is linear in `y`, so one matrix serves every head.
    """
    x = torch.as_tensor(knots, dtype=torch.float64)
    n = x.numel()
    if n < 4:
        raise ValueError(f"A cubic spline needs at least 4 knots, got {n} (a patch grid side of at least 3).")
    h = x[1:] - x[:-1]
    # Second derivatives M = A^-1 B y: C2 continuity at interior knots, third-derivative continuity at x[1], x[-2].
    a = torch.zeros(n, n, dtype=torch.float64)
    b = torch.zeros(n, n, dtype=torch.float64)
    a[0, 0], a[0, 1], a[0, 2] = h[1], -(h[0] + h[1]), h[0]
    a[-1, -3], a[-1, -2], a[-1, -1] = h[-1], -(h[-2] + h[-1]), h[-2]
    for i in range(1, n - 1):
        a[i, i - 1], a[i, i], a[i, i + 1] = h[i - 1], 2 * (h[i - 1] + h[i]), h[i]
        b[i, i - 1], b[i, i], b[i, i + 1] = 6 / h[i - 1], -6 / h[i - 1] - 6 / h[i], 6 / h[i]
    moments = torch.linalg.solve(a, b)  # (n, n): M = moments @ y

    q = torch.as_tensor(queries, dtype=torch.float64).clamp(float(x[0]), float(x[-1]))
    piece = (torch.searchsorted(x, q, right=True) - 1).clamp(0, n - 2)
    left, right, width = x[piece], x[piece + 1], h[piece]
    to_right, from_left = right - q, q - left
    weights = torch.zeros(q.numel(), n, dtype=torch.float64)
    rows = torch.arange(q.numel())
    weights[rows, piece] += to_right / width
    weights[rows, piece + 1] += from_left / width
    weights += ((to_right ** 3 / width - to_right * width) / 6)[:, None] * moments[piece]
    weights += ((from_left ** 3 / width - from_left * width) / 6)[:, None] * moments[piece + 1]
    return weights


def resize_relative_position_bias_table(table: torch.Tensor, side: int) -> torch.Tensor:
    """
    BEiT's ((2s-1)² + 3, heads) table for another patch grid side, by BEiT's and VindLU's rule
    (`interpolate_pos_relative_bias_beit`): each head's (2s-1)×(2s-1) grid of relative offsets is resampled by a
    cubic spline from geometric-progression source offsets (`geometric_progression_offsets`) to the integer
    offsets of the new grid; the three [CLS] entries are kept.
    """
    old_side = _table_side(table.shape[0], "relative_position_bias_table")
    if old_side == side:
        return table
    grid, cls_entries = table[:-3], table[-3:]
    old, new = 2 * old_side - 1, 2 * side - 1
    weights = not_a_knot_cubic_weights(*geometric_progression_offsets(old, new))  # (new, old), both axes alike
    grid = grid.T.reshape(-1, old, old).double()  # (heads, old, old)
    grid = weights @ grid @ weights.T  # separable: the tensor-product spline is a 1-D spline along each axis
    return torch.cat([grid.reshape(-1, new * new).T.to(table.dtype), cls_entries])


def resize_temporal_embedding(embedding: torch.Tensor, num_frames: int) -> torch.Tensor:
    """
    (1, T, 1, D) -> (1, num_frames, 1, D) as VindLU sets up a model with another frame count
    (`load_temp_embed_with_mismatch`): the first `num_frames` rows when fewer, the checkpoint's T rows followed by
    zero rows when more. At run time the model then interpolates only clips longer than its table.
    """
    frames = embedding.shape[1]
    if num_frames <= frames:
        return embedding[:, :num_frames]
    padding = embedding.new_zeros(1, num_frames - frames, *embedding.shape[2:])
    return torch.cat([embedding, padding], dim=1)


def resize_absolute_position_embedding(embedding: torch.Tensor, side: int) -> torch.Tensor:
    """(1, 1 + s², D) ViT-style position embeddings for a side×side patch grid (bicubic), [CLS] kept."""
    old_side = math.isqrt(embedding.shape[1] - 1)
    if old_side == side:
        return embedding
    cls, grid = embedding[:, :1], embedding[:, 1:]
    grid = grid.reshape(1, old_side, old_side, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, side * side, -1).to(embedding.dtype)], dim=1)


def _fit(key: str, source_key: str, tensor: torch.Tensor, target: torch.Size, config: T2V2TConfig, resized: dict):
    """`tensor` reshaped to `target` where the config legitimately differs (frames, image size, text length)."""
    if tensor.shape == target:
        return tensor
    vision = config.vision_config
    rule = None
    if key.endswith("relative_position_bias_table") and tensor.shape[1] == target[1]:
        fitted, rule = resize_relative_position_bias_table(tensor, vision.image_size // vision.patch_size), \
            "relative_position_bias_table"
    elif key.endswith("temporal_position_embeddings"):
        fitted, rule = resize_temporal_embedding(tensor, target[1]), "temporal_position_embeddings"
    elif key == "vision_model.embeddings.position_embeddings":
        fitted, rule = resize_absolute_position_embedding(tensor, vision.image_size // vision.patch_size), \
            "position_embeddings"
    elif key == "text_model.embeddings.position_embeddings.weight" and target[0] < tensor.shape[0]:
        fitted, rule = tensor[: target[0]], "text_position_embeddings"  # a shorter maximum caption length
    else:
        fitted = tensor
    if fitted.shape != target:
        raise ValueError(f"VindLU weight {source_key} has shape {tuple(tensor.shape)} but T2V2T's {key} needs "
                         f"{tuple(target)}; do the config overrides change the model's size?")
    resized[key] = (tuple(tensor.shape), tuple(target), RESIZE_RULES[rule])
    return fitted


# ----- converting --------------------------------------------------------------------------------------------------
@dataclass
class VindLUConversion:
    """
    The converted model and what happened to every weight:
    `missing_keys`: T2V2T weights the checkpoint has no value for, newly initialised (e.g. `t2v_layers.*`);
    `unexpected_keys`: VindLU weights with no place in T2V2T, not converted; `ignored_keys`: VindLU buffers and
    aliases T2V2T recomputes (`relative_position_index`, `position_ids`, the MLM decoder's bias alias);
    `resized_keys`: T2V2T key -> (checkpoint shape, converted shape, the resize rule used, see `RESIZE_RULES`);
    `key_map`: VindLU key -> T2V2T keys; `notes`: other facts worth knowing.
    """

    model: torch.nn.Module
    missing_keys: list[str]
    unexpected_keys: list[str]
    ignored_keys: list[str]
    resized_keys: dict[str, tuple[tuple, tuple, str]] = field(default_factory=dict)
    key_map: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"Converted {len(self.key_map)} VindLU weights into {type(self.model).__name__} "
                 f"(fusion_mode={self.model.config.fusion_mode!r})."]
        for title, keys in (("Newly initialised (not in VindLU)", self.missing_keys),
                            ("VindLU weights not used", self.unexpected_keys),
                            ("VindLU buffers/aliases recomputed by T2V2T", self.ignored_keys)):
            lines.append(f"{title}: {len(keys)}")
            lines.extend(f"  {key}" for key in keys)
        if self.resized_keys:
            lines.append(f"Resized: {len(self.resized_keys)}")
            lines.extend(f"  {key}: {old} -> {new} ({rule.split(':')[0]})"
                         for key, (old, new, rule) in sorted(self.resized_keys.items()))
        lines.extend(f"Note: {note}" for note in self.notes)
        return "\n".join(lines)

    def report(self) -> dict:
        """JSON-serialisable record of the conversion (written as `conversion_report.json`)."""
        return {"model_class": type(self.model).__name__, "missing_keys": self.missing_keys,
                "unexpected_keys": self.unexpected_keys, "ignored_keys": self.ignored_keys,
                "resized_keys": {key: {"checkpoint": list(old), "converted": list(new), "rule": rule}
                                 for key, (old, new, rule) in self.resized_keys.items()},
                "notes": self.notes}


def _rename(key: str, text_prefix: str, pretraining: bool) -> list[tuple[str, slice | None]]:
    """T2V2T base-model keys for one VindLU key, each with the slice of a fused tensor it takes (or `None`)."""
    if key.startswith(VISION_PREFIX):
        inner = key[len(VISION_PREFIX):]
        for pattern, replacement in _VISION_RENAMES:
            if pattern.fullmatch(inner):
                return [("vision_model." + pattern.sub(replacement, inner), None)]
        for pattern, replacement in _VISION_SPLITS:
            if pattern.fullmatch(inner):
                template = pattern.sub(replacement, inner)
                return [("vision_model." + template.format(name), index) for index, name in enumerate("qkv")]
        return []
    if key.startswith(MLM_PREFIX):
        inner = key[len(MLM_PREFIX):]
        return [("cls.predictions." + inner, None)] if pretraining and _MLM_NAMES.fullmatch(inner) else []
    if key.startswith(text_prefix):
        inner = key[len(text_prefix):]
        return [("text_model." + inner, None)] if _TEXT_NAMES.fullmatch(inner) else []
    return [(key, None)] if _TOP_NAMES.fullmatch(key) else []


def _check_supported(state: dict) -> None:
    timesformer = [pattern for pattern, _ in _VISION_RENAMES + _VISION_SPLITS if "temp_model" in pattern.pattern]
    for key in state:
        inner = key[len(VISION_PREFIX):] if key.startswith(VISION_PREFIX) else key
        if any(p.fullmatch(inner) for p in timesformer) or _UNUSED_TEMPORAL.fullmatch(key):
            continue
        for pattern, what in _UNSUPPORTED:
            if pattern.fullmatch(key):
                raise ValueError(f"The VindLU checkpoint uses {what} ({key}); T2V2T cannot represent it, so it "
                                 "refuses to convert rather than compute something else.")


def _check_fusion_layer(state: dict, text_prefix: str, config: T2V2TConfig) -> None:
    cross = _layer_indices({k: v for k, v in state.items() if ".crossattention." in k}, text_prefix)
    if cross and config.fusion_layer != cross[0]:
        raise ValueError(
            f"The checkpoint's text layers cross-attend to video from layer {cross[0]} "
            f"({text_prefix}encoder.layer.{cross[0]}.crossattention.*) but config.fusion_layer={config.fusion_layer}; "
            "the text-only layers would change. Keep fusion_layer as in the checkpoint."
        )


def convert_vindlu_state_dict(state: dict, config: T2V2TConfig, model_class: str = "auto") -> VindLUConversion:
    """
    Build a T2V2T model for `config` and fill it from VindLU weights `state`. `model_class`: `"model"`
    (`T2V2TModel`), `"pretraining"` (`T2V2TForPreTraining`, keeps the MLM head) or `"auto"` (pretraining when the
    checkpoint has an MLM head and the config a joint encoder).
    """
    if model_class not in ("auto", "model", "pretraining"):
        raise ValueError(f"model_class={model_class!r} is invalid: must be 'auto', 'model' or 'pretraining'.")
    has_mlm = any(key.startswith(MLM_PREFIX) for key in state)
    pretraining = model_class == "pretraining" or (model_class == "auto" and has_mlm and config.has_joint_encoder)
    _check_supported(state)
    text_prefix = _text_prefix(state)
    _check_fusion_layer(state, text_prefix, config)

    model = (T2V2TForPreTraining if pretraining else T2V2TModel)(config).eval()
    base_prefix = "t2v2t." if pretraining else ""
    targets = model.state_dict()
    converted, key_map, unexpected, ignored, resized, notes = {}, {}, [], [], {}, []
    dropped_key_biases = 0
    for source_key, tensor in state.items():
        if _DERIVED.fullmatch(source_key):
            ignored.append(source_key)
            continue
        pending, placed = [], True
        for key, part in _rename(source_key, text_prefix, pretraining):
            full_key = key if key.startswith("cls.") else base_prefix + key
            if full_key in targets:
                pending.append((key, full_key, tensor if part is None else tensor.chunk(3, dim=0)[part]))
            elif part is not None and key.endswith("k_proj.bias"):
                # A key bias adds the same q·b to every logit of a query, which softmax ignores: dropping it
                # (T2V2T's BEiT-style keys have no bias) is exact.
                dropped_key_biases += 1
            else:
                placed = False  # no place in this model (e.g. itm_head of a dual encoder)
        if not pending or not placed:
            unexpected.append(source_key)
            continue
        for key, full_key, value in pending:
            converted[full_key] = _fit(key, source_key, value, targets[full_key].shape, config, resized)
        key_map[source_key] = [full_key for _, full_key, _ in pending]
    if any(_UNUSED_TEMPORAL.fullmatch(key) for key in unexpected):
        notes.append("temp_model.linear.* are not used: VindLU's timesformer block builds that layer but never "
                     "calls it")
    if dropped_key_biases:
        notes.append(f"dropped {dropped_key_biases} key biases of fused q/k/v projections (softmax-invariant, exact)")

    decoder = converted.get("cls.predictions.decoder.weight")
    embeddings = converted.get(base_prefix + "text_model.embeddings.word_embeddings.weight")
    if decoder is not None and config.tie_word_embeddings and not torch.equal(decoder, embeddings):
        notes.append("the checkpoint's MLM decoder differs from its word embeddings; T2V2T ties them and keeps the "
                     "word embeddings")
        del converted["cls.predictions.decoder.weight"]
        key_map.pop(MLM_PREFIX + "decoder.weight", None)
        unexpected.append(MLM_PREFIX + "decoder.weight")

    result = model.load_state_dict(converted, strict=False)
    tied = {"cls.predictions.decoder.weight"} if pretraining and config.tie_word_embeddings else set()
    missing = sorted(key for key in result.missing_keys if key not in tied)
    conversion = VindLUConversion(model=model, missing_keys=missing, unexpected_keys=sorted(unexpected),
                                  ignored_keys=sorted(ignored), resized_keys=resized, key_map=key_map, notes=notes)
    logger.info("VindLU -> %s: %d weights converted, %d newly initialised, %d not used, %d resized.",
                type(model).__name__, len(key_map), len(missing), len(unexpected), len(resized))
    if missing:
        logger.info("Newly initialised T2V2T weights: %s", missing)
    if unexpected:
        logger.warning("VindLU weights not used by T2V2T: %s", conversion.unexpected_keys)
    for note in notes:
        logger.info("Note: %s", note)
    return conversion


def convert_vindlu_checkpoint(
    path: str | Path, config: T2V2TConfig | None = None, config_overrides: dict | None = None,
    model_class: str = "auto",
) -> VindLUConversion:
    """
    Read a VindLU checkpoint and convert it (see module docstring). Without `config`, one sized like the checkpoint
    is inferred and updated with `config_overrides` (e.g. `{"fusion_mode": "v2t"}`,
    `{"vision_config": {"num_frames": 12}}`); temporal and position embeddings are resized to the config by
    VindLU's rules (see `RESIZE_RULES`).
    """
    state = load_vindlu_state_dict(path)
    if config is None:
        config = vindlu_config(state, config_overrides)
    elif config_overrides:
        raise ValueError("Give either config or config_overrides, not both.")
    logger.info("Converting %s into a T2V2T model with fusion_mode=%r", path, config.fusion_mode)
    return convert_vindlu_state_dict(state, config, model_class)


def save_converted(conversion: VindLUConversion, output_dir: str | Path, tokenizer=None, max_length: int = 32) -> Path:
    """
    Save the converted model with `save_pretrained` (safetensors) and `conversion_report.json`. With `tokenizer`
    (a tokenizer or a name/path, e.g. `bert-base-uncased`), also a `T2V2TProcessor` (VindLU's BEiT normalisation,
    mean = std = 0.5) and the custom code, i.e. a full Hub folder that `training/finetune.py --model_name_or_path`
    can start from.
    """
    from ..hub.export import save_hub_folder
    from ..processing_t2v2t import T2V2TProcessor
    from ..video_processing_t2v2t import T2V2TVideoProcessor

    output_dir = Path(output_dir)
    model = conversion.model
    if tokenizer is not None:
        if isinstance(tokenizer, (str, Path)):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(model.config), tokenizer,
                                   max_length=max_length)
        save_hub_folder(model, processor, output_dir)
    else:
        logger.warning("No tokenizer given: saving the weights only; training/finetune.py also needs a processor "
                       "(pass the tokenizer, e.g. bert-base-uncased).")
        model.save_pretrained(output_dir)
    (output_dir / "conversion_report.json").write_text(json.dumps(conversion.report(), indent=1), encoding="utf-8")
    return output_dir


__all__ = [
    "VindLUConversion",
    "convert_vindlu_checkpoint",
    "convert_vindlu_state_dict",
    "infer_config_fields",
    "load_vindlu_state_dict",
    "resize_absolute_position_embedding",
    "resize_relative_position_bias_table",
    "resize_temporal_embedding",
    "geometric_progression_offsets",
    "not_a_knot_cubic_weights",
    "RESIZE_RULES",
    "save_converted",
    "vindlu_config",
]
