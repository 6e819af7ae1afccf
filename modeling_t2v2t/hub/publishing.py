"""Publishing a trained T2V2T model on the Hugging Face Hub.

`build_hub_folder` turns a folder written by `save_hub_folder` (for example the output of `training/finetune.py`)
into a folder ready to upload: safetensors weights, `config.json` with `auto_map`, the processor, the custom code
files, a model card rendered from the repository's `model_card.md` with the real evaluation numbers, the training
configuration, `LICENSE` and `CITATION.cff`. `push_folder_to_hub` creates the repository and uploads the folder.

```python
>>> from modeling_t2v2t.hub.publishing import build_hub_folder, push_folder_to_hub
>>> folder = build_hub_folder("outputs/msrvtt_finetune", "outputs/msrvtt_finetune-hub", repo_id="me/t2v2t-msrvtt",
...                           training_config="training/configs/msrvtt_finetune.json")
>>> push_folder_to_hub(folder, "me/t2v2t-msrvtt", private=True)
```

Not part of the custom code: no model file imports this module, so it never travels to the Hub.
"""

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers.utils import logging

logger = logging.get_logger(__name__)

_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card_t2v2t.md"
DEFAULT_LICENSE = _REPO_ROOT / "LICENSE"
TRAINING_CONFIG_NAME = "training_config.json"

# Processor files `save_pretrained` may write (the video processor's settings live in processor_config.json in v5).
_PROCESSOR_FILES = (
    "processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json", "tokenizer.json",
    "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "added_tokens.json",
)
# Trainer outputs worth publishing: metrics and the training log. (training_args.bin is a pickle: never published.)
_TRAINER_FILES = ("test_results.json", "all_results.json", "eval_results.json", "train_results.json",
                  "trainer_state.json")
# Looked up in this order when no results file is given: finetune.py writes both after evaluating the test split.
_RESULTS_FILES = ("test_results.json", "all_results.json")

# `{prefix}_{stage}_{direction}_{metric}` as RetrievalTrainer logs them, e.g. test_reranked_t2v_R1.
_FLAT_METRIC = re.compile(r"^(?P<prefix>[A-Za-z0-9]+)_(?P<stage>embedding|reranked)_(?P<name>(?:t2v|v2t)_\w+)$")
_STAGES = ("embedding", "reranked")
_DIRECTIONS = (("t2v", "text→video"), ("v2t", "video→text"))
_TABLE_METRICS = ("R1", "R5", "R10", "MdR", "MnR")

_FUSION_DESCRIPTIONS = {
    "t2v2t": "text→video layers with Bypass cross-attention (bypass_mode=\"{bypass}\", {t2v} layer(s)), then "
             "video→text cross-attention in the text layers",
    "naive_t2v2t": "text→video layers with plain cross-attention ({t2v} layer(s), no bypass: the paper's naïve "
                   "T2V2T ablation), then video→text cross-attention in the text layers",
    "v2t": "video→text cross-attention in the text layers only (VindLU)",
    "none": "none: a dual encoder (embedding search only, no reranking)",
}

# Hyperparameters shown in the card when the training configuration sets them.
_CARD_HYPERPARAMETERS = (
    "num_frames", "eval_num_frames", "max_length", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio", "weight_decay",
    "num_train_epochs", "max_steps", "bf16", "fp16", "seed", "k_test", "metric_for_best_model",
)

CITATION_BIBTEX = """@inproceedings{kim2023t2v2t,
  title     = {T2V2T: Text-to-Video-to-Text Fusion for Text-to-Video Retrieval},
  author    = {Kim, Jonghee and Lee, Youngwan and Moon, Jinyoung},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) Workshops},
  year      = {2023}
}

@inproceedings{cheng2023vindlu,
  title     = {VindLU: A Recipe for Effective Video-and-Language Pretraining},
  author    = {Cheng, Feng and Wang, Xizi and Lei, Jie and Crandall, David and Bansal, Mohit and Bertasius, Gedas},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2023}
}"""


def _people(*names: tuple[str, str]) -> list[dict]:
    return [{"given-names": given, "family-names": family} for given, family in names]


_T2V2T_REFERENCE = {
    "type": "conference-paper",
    "title": "T2V2T: Text-to-Video-to-Text Fusion for Text-to-Video Retrieval",
    "authors": _people(("Jonghee", "Kim"), ("Youngwan", "Lee"), ("Jinyoung", "Moon")),
    "collection-title": "Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) "
                        "Workshops",
    "year": 2023,
}
_VINDLU_REFERENCE = {
    "type": "conference-paper",
    "title": "VindLU: A Recipe for Effective Video-and-Language Pretraining",
    "authors": _people(("Feng", "Cheng"), ("Xizi", "Wang"), ("Jie", "Lei"), ("David", "Crandall"),
                       ("Mohit", "Bansal"), ("Gedas", "Bertasius")),
    "collection-title": "Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
    "year": 2023,
}


# ----- reading what a training run left behind -------------------------------------------------------------------
def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} ({what}) is not valid JSON: {error}") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} ({what}) is not UTF-8 text: {error}") from error


def _read_json_object(path: Path, what: str) -> dict:
    value = _read_json(path, what)
    if not isinstance(value, dict):
        raise ValueError(f"{path} ({what}) must hold a JSON object, got {type(value).__name__}.")
    return value


def _auto_map_modules(auto_map: dict, path: Path) -> set[str]:
    """Module names (`"modeling_t2v2t"` of `"modeling_t2v2t.T2V2TModel"`) an `auto_map` refers to."""
    modules = set()
    for auto_class, reference in auto_map.items():
        references = reference if isinstance(reference, (list, tuple)) else [reference]
        for item in references:
            if item is None:
                continue
            if not isinstance(item, str) or "." not in item:
                raise ValueError(f"{path}: auto_map[{auto_class!r}]={item!r} is not a 'module.ClassName' reference.")
            modules.add(item.split("--")[-1].rsplit(".", 1)[0])  # "repo--module.Class" points to another repo
    return modules


def collect_model_files(model_dir: str | Path) -> list[Path]:
    """
    The files of a saved T2V2T folder that belong on the Hub: safetensors weights, `config.json`, processor files,
    the custom code (`*.py`) and the Trainer's metrics/state files. Checkpoint sub-folders, `training_args.bin` and
    other pickles are left out. Raises `FileNotFoundError`/`ValueError` naming the path when something the Hub
    folder needs is missing or malformed.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"Model folder {model_dir} does not exist or is not a folder.")
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} is missing: {model_dir} is not a saved model folder "
            "(save one with modeling_t2v2t.save_hub_folder, as training/finetune.py does)."
        )
    config = _read_json_object(config_path, "model config")
    if config.get("model_type") != "t2v2t":
        raise ValueError(f"{config_path} has model_type={config.get('model_type')!r}; expected 't2v2t'.")

    weights = sorted(model_dir.glob("*.safetensors"))
    if not weights:
        others = sorted(p.name for pattern in ("*.bin", "*.pt", "*.pth") for p in model_dir.glob(pattern)
                        if p.name != "training_args.bin")
        hint = (f"; found {', '.join(others)}: re-save with save_pretrained(..., safe_serialization=True)"
                if others else "")
        raise FileNotFoundError(f"No safetensors weights (model.safetensors) in {model_dir}{hint}.")
    index_path = model_dir / "model.safetensors.index.json"
    if index_path.is_file():
        shards = set(_read_json_object(index_path, "weight index").get("weight_map", {}).values())
        absent = sorted(shard for shard in shards if not (model_dir / shard).is_file())
        if absent:
            raise FileNotFoundError(f"{index_path} lists shards that are not in {model_dir}: {absent}.")
        weights.append(index_path)

    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict) or "AutoModel" not in auto_map and "AutoModelForPreTraining" not in auto_map:
        raise ValueError(
            f"{config_path} has no auto_map for AutoModel: the folder was not saved as Hub custom code, so "
            "AutoModel.from_pretrained(..., trust_remote_code=True) could not load it. Save it with "
            "modeling_t2v2t.save_hub_folder(model, processor, folder)."
        )
    processor_path = model_dir / "processor_config.json"
    if not processor_path.is_file():
        raise FileNotFoundError(
            f"{processor_path} is missing: the folder has no processor for AutoProcessor (save the model with "
            "modeling_t2v2t.save_hub_folder(model, processor, folder))."
        )
    if not (model_dir / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"{model_dir / 'tokenizer_config.json'} is missing: the processor has no tokenizer.")
    modules = _auto_map_modules(auto_map, config_path)
    modules |= _auto_map_modules(_read_json_object(processor_path, "processor config").get("auto_map", {}),
                                 processor_path)
    absent = sorted(f"{module}.py" for module in modules if not (model_dir / f"{module}.py").is_file())
    if absent:
        raise FileNotFoundError(f"{model_dir} lacks the custom code files its auto_map names: {absent}.")

    code = sorted(model_dir.glob("*.py"))  # the auto_map modules and everything they import relatively
    extra = [model_dir / name for name in _PROCESSOR_FILES + _TRAINER_FILES if (model_dir / name).is_file()]
    return [config_path] + weights + code + extra


@dataclass
class RetrievalResults:
    """Retrieval metrics of one evaluation: `metrics[stage]["t2v_R1"]` etc., stage `embedding` or `reranked`."""

    source: str
    metrics: dict[str, dict[str, float]]
    split: str | None = None
    dataset: str | None = None
    num_videos: int | None = None
    num_texts: int | None = None

    def table_rows(self) -> list[dict]:
        """One row per (stage, direction) with R@1/5/10 and MdR/MnR formatted; '–' where a value is absent."""
        rows = []
        for stage in _STAGES:
            values = self.metrics.get(stage)
            if not values:
                continue
            for direction, label in _DIRECTIONS:
                row = {"stage": stage, "direction": label}
                for name in _TABLE_METRICS:
                    value = values.get(f"{direction}_{name}")
                    row[name] = "–" if value is None else f"{value:.1f}"
                rows.append(row)
        return rows

    def description(self) -> str:
        what = " of ".join(part for part in (f"the {self.split} split" if self.split else None,
                                             f"`{self.dataset}`" if self.dataset else None) if part)
        sizes = ", ".join(f"{count} {name}" for count, name in ((self.num_videos, "videos"),
                                                                 (self.num_texts, "captions")) if count)
        return f"Retrieval on {what or 'the evaluation split'}" + (f" ({sizes})." if sizes else ".")


def _check_metric(value, key: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{path}: metric {key!r} must be a finite number, got {value!r}.")
    return float(value)


def load_retrieval_results(path: str | Path, prefix: str = "test") -> RetrievalResults | None:
    """
    Retrieval metrics from a results file: the Trainer's `test_results.json`/`all_results.json` (flat keys
    `{prefix}_{stage}_{direction}_{metric}`) or the JSON report of `training/evaluate_retrieval.py --output_file`
    (`{"metrics": {stage: {...}}, "dataset": ...}`). Returns `None` when the file holds no retrieval metrics for
    `prefix`; raises `ValueError` naming the file and key when it is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Results file {path} does not exist.")
    data = _read_json_object(path, "evaluation results")
    metrics: dict[str, dict[str, float]] = {}
    info = {}
    if isinstance(data.get("metrics"), dict):  # training/evaluate_retrieval.py report
        for stage, values in data["metrics"].items():
            if stage not in _STAGES:
                continue
            if not isinstance(values, dict):
                raise ValueError(f"{path}: metrics[{stage!r}] must be an object, got {type(values).__name__}.")
            metrics[stage] = {name: _check_metric(value, f"metrics.{stage}.{name}", path)
                              for name, value in values.items() if name.startswith(("t2v_", "v2t_"))}
        kwargs = data.get("dataset_kwargs") if isinstance(data.get("dataset_kwargs"), dict) else {}
        info = dict(dataset=data.get("dataset"), split=kwargs.get("split"), num_videos=data.get("num_videos"),
                    num_texts=data.get("num_texts"))
    else:
        for key, value in data.items():
            match = _FLAT_METRIC.match(key)
            if match and match["prefix"] == prefix:
                metrics.setdefault(match["stage"], {})[match["name"]] = _check_metric(value, key, path)
        info = dict(split=prefix)
    metrics = {stage: values for stage, values in metrics.items() if values}
    if not metrics:
        return None
    return RetrievalResults(source=path.name, metrics=metrics, **info)


def find_retrieval_results(model_dir: str | Path, prefix: str = "test") -> RetrievalResults | None:
    """The first of `test_results.json`, `all_results.json` in `model_dir` that holds retrieval metrics."""
    for name in _RESULTS_FILES:
        path = Path(model_dir) / name
        if path.is_file():
            results = load_retrieval_results(path, prefix)
            if results is not None:
                return results
    return None


# ----- the model card ----------------------------------------------------------------------------------------------
def _num_parameters(weight_files: list[Path]) -> int:
    from safetensors import safe_open

    total = 0
    for path in weight_files:
        if path.suffix != ".safetensors":
            continue
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def _format_count(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.2f}B"
    if count >= 1e6:
        return f"{count / 1e6:.1f}M"
    return f"{count / 1e3:.1f}K" if count >= 1e3 else str(count)


def _architecture(config: dict, num_parameters: int) -> dict:
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    fusion_mode = config.get("fusion_mode", "t2v2t")
    fusion_layer = config.get("fusion_layer", 9)
    text_layers = text.get("num_hidden_layers")
    if fusion_mode == "none":
        text_layout = f"the first {fusion_layer} layers give the text embedding (no fusion layers)"
    elif fusion_layer == 0:
        text_layout = "every layer also cross-attends to video"
    else:
        text_layout = (f"layers 0–{fusion_layer - 1} text only, {fusion_layer}–{text_layers - 1} also cross-attend "
                       "to video")
    description = _FUSION_DESCRIPTIONS.get(fusion_mode, fusion_mode).format(
        bypass=config.get("bypass_mode"), t2v=config.get("num_t2v_layers"))
    return {
        "vision_layers": vision.get("num_hidden_layers"), "vision_hidden": vision.get("hidden_size"),
        "vision_heads": vision.get("num_attention_heads"), "image_size": vision.get("image_size"),
        "patch_size": vision.get("patch_size"), "num_frames": vision.get("num_frames"),
        "text_layers": text_layers, "text_hidden": text.get("hidden_size"),
        "text_heads": text.get("num_attention_heads"), "vocab_size": text.get("vocab_size"),
        "text_layout": text_layout, "fusion_mode": fusion_mode, "fusion_description": description,
        "has_joint_encoder": fusion_mode != "none", "embed_dim": config.get("embed_dim"),
        "num_parameters": _format_count(num_parameters),
    }


def _describe_data(entry) -> str:
    if not isinstance(entry, dict):
        return json.dumps(entry)
    shown = {key: value for key, value in entry.items() if key in ("builder", "split", "num_videos", "paragraph")}
    return ", ".join(f"{key}={value}" for key, value in shown.items()) or json.dumps(entry)


def _training_section(training_config: dict | None, trainer_state: dict | None, config_file: str | None) -> dict:
    section = {"data": [], "start": None, "hyperparameters": [], "state": None, "config_file": config_file}
    if training_config:
        for label, key in (("training", "train_data"), ("validation (checkpoint selection)", "validation_data"),
                           ("test (reported once, after selection)", "test_data")):
            entries = training_config.get(key)
            for entry in entries if isinstance(entries, list) else [entries] if entries else []:
                section["data"].append(f"{label}: {_describe_data(entry)}")
        if training_config.get("model_name_or_path"):
            section["start"] = f"the T2V2T checkpoint `{training_config['model_name_or_path']}`"
        elif training_config.get("vision_model_name_or_path"):
            section["start"] = (f"video encoder from `{training_config['vision_model_name_or_path']}`, text encoder "
                                f"from `{training_config.get('text_model_name_or_path')}`, fusion layers new")
        elif training_config.get("model_config"):
            section["start"] = "from scratch (random initialisation, word vocabulary built from the training captions)"
        section["hyperparameters"] = [(key, json.dumps(training_config[key])) for key in _CARD_HYPERPARAMETERS
                                      if key in training_config]
    if trainer_state:
        step, epoch = trainer_state.get("global_step"), trainer_state.get("epoch")
        parts = []
        if step is not None:
            parts.append(f"Trained for {step} steps" + (f" ({epoch:.2f} epochs)" if isinstance(epoch, (int, float))
                                                        else "") + ".")
        best_step, best = trainer_state.get("best_global_step"), trainer_state.get("best_metric")
        if best_step is not None and isinstance(best, (int, float)):
            metric = (training_config or {}).get("metric_for_best_model") or "score"
            parts.append(f"The published weights are those of step {best_step}, the best validation {metric} "
                         f"({best:.2f}).")
        section["state"] = " ".join(parts) or None
    return section


def render_model_card(
    model_dir: Path,
    repo_id: str,
    weight_files: list[Path],
    code_files: list[str],
    results: RetrievalResults | None,
    training_config: dict | None,
    training_config_file: str | None,
    datasets: list[str] | None = None,
    template: str | Path = DEFAULT_TEMPLATE,
) -> ModelCard:
    """The model card (YAML metadata + Markdown) rendered from `template` with `huggingface_hub.ModelCard`."""
    config = _read_json_object(model_dir / "config.json", "model config")
    state_path = model_dir / "trainer_state.json"
    trainer_state = _read_json_object(state_path, "trainer state") if state_path.is_file() else None
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        # No pipeline_tag: the Hub has no text-to-video-retrieval task, and "feature-extraction" would promise a
        # pipeline() that custom retrieval code does not provide. Tags make the model findable instead.
        tags=["t2v2t", "text-to-video-retrieval", "video-retrieval", "video-text-retrieval", "vindlu", "custom_code"],
        datasets=datasets or None,
        metrics=["recall", "median_rank", "mean_rank"],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        arch=_architecture(config, _num_parameters(weight_files)),
        code_files=code_files,
        training=_training_section(training_config, trainer_state, training_config_file),
        results=None if results is None else {"rows": results.table_rows(), "source": results.source,
                                              "description": results.description()},
        citation_bibtex=CITATION_BIBTEX,
    )


def citation_cff(repo_id: str) -> str:
    """CITATION.cff for the published model: cite T2V2T (preferred) and VindLU."""
    citation = {
        "cff-version": "1.2.0",
        "message": "If you use this model, please cite the T2V2T paper and VindLU, on which it is built.",
        "title": f"{repo_id}: a T2V2T text-to-video retrieval model",
        "type": "software",
        "license": "Apache-2.0",
        "authors": [{"name": repo_id.split("/")[0]}],
        "preferred-citation": _T2V2T_REFERENCE,
        "references": [_VINDLU_REFERENCE],
    }
    return yaml.safe_dump(citation, sort_keys=False, allow_unicode=True)


# ----- building and pushing ----------------------------------------------------------------------------------------
def build_hub_folder(
    model_dir: str | Path,
    output_dir: str | Path,
    repo_id: str,
    training_config: str | Path | None = None,
    results_file: str | Path | None = None,
    results_prefix: str = "test",
    datasets: list[str] | None = None,
    template: str | Path = DEFAULT_TEMPLATE,
    license_file: str | Path = DEFAULT_LICENSE,
    overwrite: bool = False,
) -> Path:
    """
    Assemble a Hub-ready folder in `output_dir` from the trained model folder `model_dir`.

    Args:
        repo_id: the Hub repository the card's usage example names (`org/name`).
        training_config: the JSON config the model was trained with; default `model_dir/training_config.json`
            if present. Copied as `training_config.json` and summarised in the card.
        results_file: evaluation results (Trainer `*_results.json` or `training/evaluate_retrieval.py` report); default the
            first of `test_results.json`, `all_results.json` in `model_dir` with retrieval metrics. Without any,
            the card says "not evaluated".
        results_prefix: metric key prefix of the split to report from Trainer files (`test`).
        datasets: Hub dataset ids for the card's metadata (optional).
        overwrite: replace a non-empty `output_dir`.

    Everything is validated before anything is written; errors name the offending path.
    """
    model_dir, output_dir = Path(model_dir).resolve(), Path(output_dir).resolve()
    files = collect_model_files(model_dir)
    if output_dir == model_dir or output_dir in model_dir.parents:
        raise ValueError(f"The output folder {output_dir} must not be the model folder {model_dir} or contain it.")
    template, license_file = Path(template), Path(license_file)
    for path, what in ((template, "model card template"), (license_file, "license text")):
        if not path.is_file():
            raise FileNotFoundError(f"The {what} {path} does not exist.")

    config_path = Path(training_config) if training_config else model_dir / TRAINING_CONFIG_NAME
    if training_config and not config_path.is_file():
        raise FileNotFoundError(f"Training config {config_path} does not exist.")
    training = _read_json_object(config_path, "training config") if config_path.is_file() else None

    if results_file is not None:
        results = load_retrieval_results(results_file, results_prefix)
        if results is None:
            raise ValueError(f"{results_file} holds no retrieval metrics for prefix {results_prefix!r} "
                             "(expected keys like test_reranked_t2v_R1 or a training/evaluate_retrieval.py report).")
    else:
        results = find_retrieval_results(model_dir, results_prefix)
    test_data = (training or {}).get("test_data")
    if results is not None and results.dataset is None and isinstance(test_data, dict) and results.split == "test":
        results.dataset = test_data.get("builder")  # the Trainer's files do not name the dataset; the config does
    if results is None:
        logger.warning("No evaluation results in %s: the model card will say 'not evaluated'.", model_dir)

    weight_files = [path for path in files if path.suffix == ".safetensors"]
    code_files = [path.name for path in files if path.suffix == ".py"]
    card = render_model_card(model_dir, repo_id, weight_files, code_files, results, training,
                             TRAINING_CONFIG_NAME if training is not None else None, datasets, template)

    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output_dir} already exists and is not empty; pass overwrite=True (--overwrite).")
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, output_dir / path.name)
    if training is not None:
        shutil.copyfile(config_path, output_dir / TRAINING_CONFIG_NAME)  # verbatim, comments included
    card.save(str(output_dir / "README.md"))
    shutil.copyfile(license_file, output_dir / "LICENSE")
    (output_dir / "CITATION.cff").write_text(citation_cff(repo_id), encoding="utf-8")
    logger.info("Built a Hub folder for %s in %s: %s", repo_id, output_dir,
                sorted(path.name for path in output_dir.iterdir()))
    return output_dir


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    api: HfApi | None = None,
):
    """
    Create `repo_id` (a model repository; kept as is if it exists) and upload `folder` built by
    `build_hub_folder`. Returns the `CommitInfo` of the upload.
    """
    folder = Path(folder)
    collect_model_files(folder)  # refuse to publish a folder that would not load
    if not (folder / "README.md").is_file():
        raise FileNotFoundError(f"{folder / 'README.md'} is missing: build the folder with build_hub_folder first.")
    api = api or HfApi(token=token)
    # private=None (not False) when not asked for, so an organisation's default visibility applies.
    repo_url = api.create_repo(repo_id=repo_id, repo_type="model", private=True if private else None, exist_ok=True)
    logger.info("Uploading %s to %s", folder, repo_url)
    commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                               commit_message=commit_message or "Upload T2V2T model")
    logger.info("Uploaded: %s", getattr(commit, "commit_url", commit))
    return commit


__all__ = [
    "RetrievalResults",
    "build_hub_folder",
    "collect_model_files",
    "citation_cff",
    "find_retrieval_results",
    "load_retrieval_results",
    "push_folder_to_hub",
    "render_model_card",
]
