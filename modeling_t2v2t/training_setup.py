"""Model arguments of the training scripts and the one function that turns them into a model and its processor:
from a T2V2T checkpoint, from image + text towers (BEiT/ViT + BERT), or from scratch with a config and a word
vocabulary built from the training captions."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
from transformers.utils import logging

from .configuration_t2v2t import T2V2TConfig
from .modeling_t2v2t import T2V2TForPreTraining, T2V2TModel
from .processing_t2v2t import T2V2TProcessor
from .video_processing_t2v2t import T2V2TVideoProcessor
from .word_vocabulary import build_word_tokenizer

logger = logging.get_logger(__name__)


def parse_json_argument(value, name: str, expected: tuple = (dict,)):
    """A JSON value given on the command line (a string) or in a JSON config file (already parsed)."""
    if value is None or not isinstance(value, str):
        parsed = value
    else:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"--{name} is not valid JSON: {error}") from error
    if parsed is not None and not isinstance(parsed, expected):
        raise ValueError(f"--{name} must be JSON of type {' or '.join(t.__name__ for t in expected)}, "
                         f"got {type(parsed).__name__}.")
    return parsed


def parse_arguments(dataclass_types, argv: list[str]):
    """Script arguments from the command line, or from one JSON file (keys starting with `_` are comments)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types)
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(argv[0], encoding="utf-8") as handle:
            values = {key: value for key, value in json.load(handle).items() if not key.startswith("_")}
        return parser.parse_dict(values)
    return parser.parse_args_into_dataclasses(argv)


@dataclass
class ModelArguments:
    """Where the model comes from: exactly one of `model_name_or_path`, the two tower paths, or `model_config`."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A T2V2T checkpoint (local folder or Hub id) with its processor."})
    vision_model_name_or_path: str | None = field(
        default=None, metadata={"help": "BEiT/ViT checkpoint to start the video encoder from."})
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "BERT checkpoint (with tokenizer) to start the text encoder from."})
    model_config: str | None = field(
        default=None, metadata={"help": "JSON T2V2TConfig fields to train from scratch (a word vocabulary is "
                                        "built from the training captions)."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "JSON T2V2TConfig fields applied on top (fusion_mode, bypass_mode, ...)."})
    num_frames: int | None = field(default=None, metadata={"help": "Training frames per clip."})
    max_length: int = field(default=32, metadata={"help": "Caption length in tokens (VindLU: 32, paragraphs 64)."})
    trust_remote_code: bool = False

    def __post_init__(self):
        self.model_config = parse_json_argument(self.model_config, "model_config") or {}
        self.config_overrides = parse_json_argument(self.config_overrides, "config_overrides") or {}
        sources = [bool(self.model_name_or_path), bool(self.vision_model_name_or_path or self.text_model_name_or_path),
                   bool(self.model_config)]
        if sum(sources) != 1:
            raise ValueError("Give exactly one model source: --model_name_or_path, or --vision_model_name_or_path "
                             "with --text_model_name_or_path, or --model_config.")
        if bool(self.vision_model_name_or_path) != bool(self.text_model_name_or_path):
            raise ValueError("--vision_model_name_or_path and --text_model_name_or_path go together.")


def load_model_and_processor(args: ModelArguments, pretraining: bool, captions=None, output_dir: str = "."):
    """
    The model (`T2V2TForPreTraining` if `pretraining`, else `T2V2TModel`) and a `T2V2TProcessor` whose frame
    count and image size agree with it. `captions` (training captions) are needed only to build a vocabulary
    when training from scratch.
    """
    model_class = T2V2TForPreTraining if pretraining else T2V2TModel
    vision_overrides = {"num_frames": args.num_frames} if args.num_frames else {}
    if args.model_name_or_path:
        model = model_class.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code,
                                            **args.config_overrides)
        processor = AutoProcessor.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
        if args.num_frames:
            processor.video_processor.num_frames = args.num_frames
    elif args.vision_model_name_or_path:
        model = model_class.from_vision_text_pretrained(
            args.vision_model_name_or_path, args.text_model_name_or_path, vision_config_overrides=vision_overrides,
            **args.config_overrides)
        image_processor = AutoImageProcessor.from_pretrained(args.vision_model_name_or_path)
        video_processor = T2V2TVideoProcessor.from_image_processor(
            image_processor, num_frames=model.config.vision_config.num_frames,
            size={"height": model.config.vision_config.image_size, "width": model.config.vision_config.image_size})
        processor = T2V2TProcessor(video_processor, AutoTokenizer.from_pretrained(args.text_model_name_or_path),
                                   max_length=args.max_length)
    else:
        if captions is None:
            raise ValueError("Training from scratch (--model_config) needs the training captions for a vocabulary.")
        tokenizer = build_word_tokenizer(captions, Path(output_dir) / "tokenizer")
        fields = {**args.model_config, **args.config_overrides}
        text = {**fields.pop("text_config", {}), "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                "cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id,
                "mask_token_id": tokenizer.mask_token_id}
        vision = {**fields.pop("vision_config", {}), **vision_overrides}
        model = model_class(T2V2TConfig(text_config=text, vision_config=vision, **fields))
        processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(model.config.vision_config), tokenizer,
                                   max_length=args.max_length)
    processor.video_processor.check_compatible(model.config.vision_config)
    logger.info("Model: %s with %.1fM parameters (fusion_mode=%s)", type(model).__name__,
                model.num_parameters() / 1e6, model.config.fusion_mode)
    return model, processor


__all__ = ["ModelArguments", "load_model_and_processor", "parse_arguments", "parse_json_argument"]
