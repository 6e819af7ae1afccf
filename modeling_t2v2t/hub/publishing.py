"""Publishing a trained T2V2T, X-Pool or CRET model on the Hugging Face Hub.

`build_hub_folder` turns a saved model folder (for example the output of `training/finetune.py`, or any folder
written by `save_pretrained`) into a folder ready to upload: safetensors weights, `config.json` with `auto_map`, the
processor, the custom code files, a model card rendered from the package's template for that model type with the
real evaluation numbers (also as `model-index` metadata), the training configuration, `LICENSE` and
`CITATION.cff`. `push_folder_to_hub` creates the repository and uploads the folder.

```python
>>> from modeling_t2v2t.hub.publishing import build_hub_folder, push_folder_to_hub
>>> folder = build_hub_folder("outputs/msrvtt_finetune", "outputs/msrvtt_finetune-hub", repo_id="me/t2v2t-msrvtt",
...                           training_config="training/configs/msrvtt_finetune.json")
>>> push_folder_to_hub(folder, "me/t2v2t-msrvtt", private=True)
```

Not part of the custom code: no model file imports this module, so it never travels to the Hub.
"""

import importlib.metadata
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi
from transformers.utils import logging

from .model_card import TEMPLATES, citation_cff, read_weight_info, render_model_card, table_rows, template_for

logger = logging.get_logger(__name__)

DISTRIBUTION = "t2v2t"
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


def license_text() -> str:
    """
    The licence text of the installed `t2v2t` distribution, read from its metadata (`licenses/LICENSE`, which
    setuptools writes into the wheel and into editable installs alike), so publishing works from any install.
    """
    # Every metadata folder named t2v2t on the path, not only the first: a source checkout holds a build-time
    # `t2v2t.egg-info` (no licence files) that shadows the installed dist-info when the checkout is the cwd.
    distributions = list(importlib.metadata.distributions(name=DISTRIBUTION))
    if not distributions:
        raise FileNotFoundError(f"The {DISTRIBUTION!r} distribution is not installed, so its LICENSE cannot be read; "
                                "install the package (pip install .) or pass license_file=/--license-file.")
    for distribution in distributions:
        for name in ("licenses/LICENSE", "LICENSE"):  # metadata 2.4 layout, then older setuptools
            text = distribution.read_text(name)
            if text:
                return text
    places = ", ".join(str(distribution.locate_file("")) for distribution in distributions)
    raise FileNotFoundError(f"The installed {DISTRIBUTION!r} distribution ({places}) has no licenses/LICENSE in its "
                            "metadata; reinstall it or pass license_file=/--license-file.")


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
    The files of a saved model folder (T2V2T, X-Pool or CRET) that belong on the Hub: safetensors weights,
    `config.json`, processor files, the custom code (`*.py`) and the Trainer's metrics/state files. Checkpoint sub-folders, `training_args.bin` and
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
            "(save one with model.save_pretrained, as training/finetune.py does)."
        )
    config = _read_json_object(config_path, "model config")
    if config.get("model_type") not in TEMPLATES:
        raise ValueError(f"{config_path} has model_type={config.get('model_type')!r}; expected one of "
                         f"{sorted(TEMPLATES)}.")

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
        return table_rows(self.metrics)

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


# ----- building and pushing ----------------------------------------------------------------------------------------
def build_hub_folder(
    model_dir: str | Path,
    output_dir: str | Path,
    repo_id: str | None = None,
    training_config: str | Path | None = None,
    results_file: str | Path | None = None,
    results_prefix: str = "test",
    datasets: list[str] | None = None,
    template: str | Path | None = None,
    license_file: str | Path | None = None,
    overwrite: bool = False,
    model_name: str | None = None,
) -> Path:
    """
    Assemble a Hub-ready folder in `output_dir` from the saved model folder `model_dir` (T2V2T, X-Pool or CRET).

    Args:
        repo_id: the Hub repository (`org/name`) the card's usage example and citation name. Without it the card
            says it was rendered for a local folder and loads `./<model_name>` in its examples.
        training_config: the JSON config the model was trained with; default `model_dir/training_config.json`
            if present. Copied as `training_config.json` and summarised in the card.
        results_file: evaluation results (Trainer `*_results.json` or `training/evaluate_retrieval.py` report);
            default the first of `test_results.json`, `all_results.json` in `model_dir` with retrieval metrics.
            Without any, the card says "not evaluated" and its metadata has no `model-index`.
        results_prefix: metric key prefix of the split to report from Trainer files (`test`).
        datasets: Hub dataset ids for the card's metadata (optional); the first also names the `model-index` dataset.
        template: a model card template (Jinja; may extend `model_card_base.md`); default the package's template
            for the config's `model_type`.
        license_file: the licence text to publish; default the LICENSE of the installed `t2v2t` distribution.
        overwrite: replace a non-empty `output_dir`.
        model_name: the card's title; default the repository's name, else the name of `output_dir`.

    Everything is validated before anything is written; errors name the offending path.
    """
    model_dir, output_dir = Path(model_dir).resolve(), Path(output_dir).resolve()
    files = collect_model_files(model_dir)
    if output_dir == model_dir or output_dir in model_dir.parents:
        raise ValueError(f"The output folder {output_dir} must not be the model folder {model_dir} or contain it.")
    if repo_id is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ValueError(f"repo_id={repo_id!r} is not a Hub repository id of the form 'org/name'.")
    config = _read_json_object(model_dir / "config.json", "model config")
    template = Path(template) if template is not None else template_for(config["model_type"])
    if not template.is_file():
        raise FileNotFoundError(f"The model card template {template} does not exist.")
    if license_file is not None:
        license_file = Path(license_file)
        if not license_file.is_file():
            raise FileNotFoundError(f"The license text {license_file} does not exist.")
        licence = license_file.read_text(encoding="utf-8")
    else:
        licence = license_text()

    config_path = Path(training_config) if training_config else model_dir / TRAINING_CONFIG_NAME
    if training_config and not config_path.is_file():
        raise FileNotFoundError(f"Training config {config_path} does not exist.")
    training = _read_json_object(config_path, "training config") if config_path.is_file() else None
    state_path = model_dir / "trainer_state.json"
    trainer_state = _read_json_object(state_path, "trainer state") if state_path.is_file() else None
    train_results_path = model_dir / "train_results.json"
    train_results = (_read_json_object(train_results_path, "train results") if train_results_path.is_file()
                     else None)
    processor = _read_json_object(model_dir / "processor_config.json", "processor config")
    video_processor = processor.get("video_processor") if isinstance(processor.get("video_processor"), dict) else {}

    if results_file is not None:
        results = load_retrieval_results(results_file, results_prefix)
        if results is None:
            raise ValueError(f"{results_file} holds no retrieval metrics for prefix {results_prefix!r} (expected keys "
                             "like test_reranked_t2v_R1 or a training/evaluate_retrieval.py report).")
    else:
        results = find_retrieval_results(model_dir, results_prefix)
    test_data = (training or {}).get("test_data")
    if results is not None and results.dataset is None and isinstance(test_data, dict) and results.split == "test":
        results.dataset = test_data.get("builder")  # the Trainer's files do not name the dataset; the config does
    if results is None:
        logger.warning("No evaluation results in %s: the model card will say 'not evaluated'.", model_dir)
    if repo_id is None:
        logger.warning("No repo_id: the model card of %s is rendered for a local folder and says so; pass repo_id "
                       "(--repo-id ORG/NAME) to name the Hub repository.", output_dir)

    model_name = model_name or (repo_id.split("/")[-1] if repo_id else output_dir.name)
    weight_files = [path for path in files if path.suffix == ".safetensors"]
    code_files = [path.name for path in files if path.suffix == ".py"]
    card = render_model_card(
        config, model_name, repo_id, read_weight_info(weight_files), code_files,
        num_frames=video_processor.get("num_frames"), results=results, training_config=training,
        training_config_file=TRAINING_CONFIG_NAME if training is not None else None, trainer_state=trainer_state,
        datasets=datasets, template=template, train_results=train_results)
    if (model_dir / "README.md").is_file():
        logger.info("%s is not copied: the built folder gets the card rendered from the weights, config and results.",
                    model_dir / "README.md")

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
    (output_dir / "LICENSE").write_text(licence, encoding="utf-8")
    (output_dir / "CITATION.cff").write_text(citation_cff(config, model_name, repo_id), encoding="utf-8")
    logger.info("Built a Hub folder for %s in %s: %s", repo_id or model_name, output_dir,
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
                               commit_message=commit_message or "Upload model")
    logger.info("Uploaded: %s", getattr(commit, "commit_url", commit))
    return commit


__all__ = [
    "RetrievalResults",
    "license_text",
    "build_hub_folder",
    "collect_model_files",
    "citation_cff",
    "find_retrieval_results",
    "load_retrieval_results",
    "push_folder_to_hub",
    "render_model_card",
]
