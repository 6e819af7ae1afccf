"""Model cards of Hub folders: the template of each model type, its architecture table, the weight precision read
from the tensors, the `model-index` metadata of the evaluation results, and the citations (BibTeX and
CITATION.cff, both written from one list of papers).

The templates are Jinja files shipped in `templates/` (package data): `model_card_base.md` holds what every card
says (usage notice, training, evaluation, licence, citation) and `model_card_<model_type>.md` extends it with the
model's own description, architecture rows and usage code.
Not part of the custom code: no model file imports this module, so it never travels to the Hub.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.utils import logging

logger = logging.get_logger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATES = {"t2v2t": "model_card_t2v2t.md", "xpool": "model_card_xpool.md", "cret": "model_card_cret.md"}
MODEL_TITLES = {"t2v2t": "T2V2T", "xpool": "X-Pool", "cret": "CRET"}

_TAGS = ["text-to-video-retrieval", "video-retrieval", "video-text-retrieval", "custom_code"]
_MODEL_TAGS = {"t2v2t": ["t2v2t", "vindlu"], "xpool": ["x-pool"], "cret": ["cret"]}

_STAGES = ("embedding", "reranked")
_DIRECTIONS = (("t2v", "text→video"), ("v2t", "video→text"))
_TABLE_METRICS = ("R1", "R5", "R10", "MdR", "MnR")
# model-index metric type and label of each metric key.
_INDEX_METRICS = {"R1": ("recall@1", "R@1"), "R5": ("recall@5", "R@5"), "R10": ("recall@10", "R@10"),
                  "MdR": ("median_rank", "MdR"), "MnR": ("mean_rank", "MnR")}
_INDEX_TASKS = {"t2v": ("text-to-video-retrieval", "Text-to-video retrieval"),
                "v2t": ("video-to-text-retrieval", "Video-to-text retrieval")}

_FUSION_DESCRIPTIONS = {
    "t2v2t": "text→video layers with Bypass cross-attention (bypass_mode=\"{bypass}\", {t2v} layer(s)), then "
             "video→text cross-attention in the text layers",
    "naive_t2v2t": "text→video layers with plain cross-attention ({t2v} layer(s), no bypass: the paper's naïve "
                   "T2V2T ablation), then video→text cross-attention in the text layers",
    "v2t": "video→text cross-attention in the text layers only (VindLU)",
    "none": "none: a dual encoder (embedding search only, no reranking)",
}
# safetensors dtype codes -> torch names.
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
           "F8_E5M2": "float8_e5m2"}


# ----- papers and citations ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Paper:
    short: str  # how the card names it
    key: str
    title: str
    authors: tuple[tuple[str, str], ...]  # (given names, family names)
    venue: str
    year: int

    def bibtex(self) -> str:
        authors = " and ".join(f"{family}, {given}" for given, family in self.authors)
        return (f"@inproceedings{{{self.key},\n  title     = {{{self.title}}},\n  author    = {{{authors}}},\n"
                f"  booktitle = {{{self.venue}}},\n  year      = {{{self.year}}}\n}}")

    def cff(self) -> dict:
        return {"type": "conference-paper", "title": self.title,
                "authors": [{"given-names": given, "family-names": family} for given, family in self.authors],
                "collection-title": self.venue, "year": self.year}


_CVPR = "Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)"
PAPERS = {
    "t2v2t": Paper("T2V2T", "kim2023t2v2t", "T2V2T: Text-to-Video-to-Text Fusion for Text-to-Video Retrieval",
                   (("Jonghee", "Kim"), ("Youngwan", "Lee"), ("Jinyoung", "Moon")),
                   "Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) Workshops",
                   2023),
    "vindlu": Paper("VindLU", "cheng2023vindlu", "VindLU: A Recipe for Effective Video-and-Language Pretraining",
                    (("Feng", "Cheng"), ("Xizi", "Wang"), ("Jie", "Lei"), ("David", "Crandall"), ("Mohit", "Bansal"),
                     ("Gedas", "Bertasius")), _CVPR, 2023),
    "xpool": Paper("X-Pool", "gorti2022xpool", "X-Pool: Cross-Modal Language-Video Attention for Text-Video Retrieval",
                   (("Satya Krishna", "Gorti"), ("Noël", "Vouitsis"), ("Junwei", "Ma"), ("Keyvan", "Golestan"),
                    ("Maksims", "Volkovs"), ("Animesh", "Garg"), ("Guangwei", "Yu")), _CVPR, 2022),
    "cret": Paper("CRET", "ji2022cret", "CRET: Cross-Modal Retrieval Transformer for Efficient Text-Video Retrieval",
                  (("Kaixiang", "Ji"), ("Jiajia", "Liu"), ("Weixiang", "Hong"), ("Liheng", "Zhong"), ("Jian", "Wang"),
                   ("Jingdong", "Chen"), ("Wei", "Chu")),
                  "Proceedings of the 45th International ACM SIGIR Conference on Research and Development in "
                  "Information Retrieval (SIGIR)", 2022),
    "clip": Paper("CLIP", "radford2021clip", "Learning Transferable Visual Models From Natural Language Supervision",
                  (("Alec", "Radford"), ("Jong Wook", "Kim"), ("Chris", "Hallacy"), ("Aditya", "Ramesh"),
                   ("Gabriel", "Goh"), ("Sandhini", "Agarwal"), ("Girish", "Sastry"), ("Amanda", "Askell"),
                   ("Pamela", "Mishkin"), ("Jack", "Clark"), ("Gretchen", "Krueger"), ("Ilya", "Sutskever")),
                  "Proceedings of the 38th International Conference on Machine Learning (ICML)", 2021),
}


def papers_for(config: dict) -> list[Paper]:
    """The papers a model of this config should cite, the method's own first."""
    model_type = config.get("model_type")
    if model_type == "t2v2t":
        return [PAPERS["t2v2t"], PAPERS["vindlu"]]
    if model_type == "xpool":
        return [PAPERS["xpool"]] + ([PAPERS["clip"]] if config.get("backbone") == "clip" else [])
    if model_type == "cret":
        return [PAPERS["cret"]]
    raise ValueError(f"No model card is known for model_type={model_type!r}; expected one of {sorted(TEMPLATES)}.")


def citation_cff(config: dict, model_name: str, repo_id: str | None = None) -> str:
    """CITATION.cff of a published model: the method's paper as preferred citation, the others as references."""
    papers = papers_for(config)
    title = MODEL_TITLES[config["model_type"]]
    citation = {
        "cff-version": "1.2.0",
        "message": f"If you use this model, please cite the {title} paper"
                   + (" and the works it builds on." if len(papers) > 1 else "."),
        "title": f"{model_name}: a {title} text-to-video retrieval model",
        "type": "software",
        "license": "Apache-2.0",
        # Without a repository the publisher is unknown; the code is the t2v2t project's.
        "authors": [{"name": repo_id.split("/")[0] if repo_id else "the t2v2t project"}],
        "preferred-citation": papers[0].cff(),
    }
    if len(papers) > 1:
        citation["references"] = [paper.cff() for paper in papers[1:]]
    return yaml.safe_dump(citation, sort_keys=False, allow_unicode=True)


# ----- what the folder holds ---------------------------------------------------------------------------------------
@dataclass
class WeightInfo:
    """Parameters per stored dtype, read from the safetensors headers (not from `config.json`)."""

    num_parameters: int
    floating: dict[str, int]  # dtype -> parameters

    @property
    def description(self) -> str:
        if not self.floating:
            return "safetensors (no floating-point tensors)"
        if len(self.floating) == 1:
            return f"{next(iter(self.floating))} safetensors"
        parts = ", ".join(f"{dtype} for {_format_count(count)} parameters"
                          for dtype, count in sorted(self.floating.items(), key=lambda item: -item[1]))
        return f"safetensors, mixed precision: {parts}"

    @property
    def half_precision(self) -> bool:
        return bool(self.floating) and "float32" not in self.floating and "float64" not in self.floating


def read_weight_info(weight_files: list[Path]) -> WeightInfo:
    from safetensors import safe_open

    total, floating = 0, {}
    for path in weight_files:
        if path.suffix != ".safetensors":
            continue
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                tensor = handle.get_slice(key)
                count = math.prod(tensor.get_shape())
                total += count
                dtype = tensor.get_dtype()
                if dtype in _DTYPES:
                    floating[_DTYPES[dtype]] = floating.get(_DTYPES[dtype], 0) + count
    return WeightInfo(total, floating)


def _format_count(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.2f}B"
    if count >= 1e6:
        return f"{count / 1e6:.1f}M"
    return f"{count / 1e3:.1f}K" if count >= 1e3 else str(count)


def _patch_stem(vision: dict) -> str:
    """What turns a frame into patches, when it is not BEiT/ViT's linear projection of the frame alone (the card's
    default wording)."""
    stem = ""
    if vision.get("frame_difference_channels", False):
        stem = " (each frame with its difference from the frame before it: TSN's RGB difference, Wang et al. 2016)"
    if vision.get("patch_embedding", "linear") != "conv_stem":
        return stem
    channels = ", ".join(str(width) for width in vision.get("conv_stem_channels") or ())
    return stem + f" through a convolutional stem (3×3 stride-2 convolutions of {channels} channels, Xiao et al. 2021)"


def _towers(vision: dict, text: dict) -> dict:
    return {
        "vision_layers": vision.get("num_hidden_layers"), "vision_hidden": vision.get("hidden_size"),
        "vision_heads": vision.get("num_attention_heads"), "image_size": vision.get("image_size"),
        "patch_size": vision.get("patch_size"), "patch_stem": _patch_stem(vision),
        "text_layers": text.get("num_hidden_layers"),
        "text_hidden": text.get("hidden_size"), "text_heads": text.get("num_attention_heads"),
        "vocab_size": text.get("vocab_size"),
    }


def _temporal_start(training_config: dict) -> str:
    """How a video tower trained from scratch started its temporal modules, when not as VindLU (both at 0)."""
    vision = (training_config.get("model_config") or {}).get("vision_config") or {}
    gate, spread = vision.get("temporal_scale_init_value", 0.0), vision.get("temporal_position_init_std", 0.0)
    if not gate and not spread:
        return ""
    position = f"drawn with std {spread:g}" if spread else "at 0"
    return f"; temporal gates start at {gate:g}, the temporal position embedding {position}"


def architecture(config: dict, num_frames: int | None) -> dict:
    """The numbers the model card's architecture table shows, for each model type."""
    model_type = config.get("model_type")
    vision, text = config.get("vision_config") or {}, config.get("text_config") or {}
    arch = {"num_frames": num_frames or vision.get("num_frames"), "embed_dim": config.get("embed_dim")}
    if model_type == "t2v2t":
        fusion_mode, fusion_layer = config.get("fusion_mode", "t2v2t"), config.get("fusion_layer", 9)
        text_layers = text.get("num_hidden_layers")
        if fusion_mode == "none":
            text_layout = f"the first {fusion_layer} layers give the text embedding (no fusion layers)"
        elif fusion_layer == 0:
            text_layout = "every layer also cross-attends to video"
        else:
            fused = f"layer {fusion_layer} also cross-attends" if fusion_layer == text_layers - 1 else (
                f"layers {fusion_layer}–{text_layers - 1} also cross-attend")
            text_layout = f"layers 0–{fusion_layer - 1} text only, {fused} to video"
        description = _FUSION_DESCRIPTIONS.get(fusion_mode, fusion_mode).format(
            bypass=config.get("bypass_mode"), t2v=config.get("num_t2v_layers"))
        if config.get("fusion_frame_embedding"):
            description += ("; the joint encoder's video tokens carry a learned per-frame time marker "
                            "(`fusion_frame_embedding`, not in VindLU or T2V2T)")
        if config.get("fusion_patch_embedding"):
            description += ("; the joint encoder's video tokens carry a learned per-position place marker "
                            "(`fusion_patch_embedding`, not in VindLU or T2V2T)")
        text_feature = "mean over the caption's tokens" if config.get("text_pooling") == "mean" else "[CLS]"
        return {**arch, **_towers(vision, text), "text_layout": text_layout, "fusion_mode": fusion_mode,
                "fusion_description": description, "has_joint_encoder": fusion_mode != "none",
                "text_feature": f"text = {text_feature} of the text-only layers, projected",
                "video_feature": "video = mean over frames of per-frame embeddings, L2-normalised (CLIP4Clip's "
                                 "meanP)" if config.get("video_pooling") == "normalized_mean" else
                                 "video = mean over frames of per-frame embeddings"}
    if model_type == "xpool":
        backbone = config.get("backbone", "towers")
        if backbone == "clip":
            clip = config.get("clip_config") or {}
            towers = _towers(clip.get("vision_config") or {}, clip.get("text_config") or {})
        else:
            towers = _towers(vision, text)
        logit_scale_max = config.get("logit_scale_max")
        return {**arch, **towers, "backbone": backbone, "pooling_heads": config.get("num_attention_heads"),
                "pooling_dropout": config.get("pooling_dropout"),
                "logit_scale_max": None if logit_scale_max is None else f"{math.exp(logit_scale_max):.0f}",
                "has_joint_encoder": False}
    if model_type == "cret":
        centers, ccm_hidden = config.get("num_centers"), config.get("ccm_hidden_size")
        known = None not in (arch["embed_dim"], centers, ccm_hidden)
        search_dim = arch["embed_dim"] + centers * ccm_hidden if known else None
        return {**arch, **_towers(vision, text), "num_centers": centers, "ccm_hidden": ccm_hidden,
                "ccm_layers": config.get("ccm_num_layers"), "ccm_heads": config.get("ccm_num_attention_heads"),
                "alpha": config.get("alpha"), "beta": config.get("beta"), "search_dim": search_dim,
                "has_joint_encoder": False}
    raise ValueError(f"No model card is known for model_type={model_type!r}; expected one of {sorted(TEMPLATES)}.")


def _describe_data(entry) -> str:
    if not isinstance(entry, dict):
        return json.dumps(entry)
    shown = {key: value for key, value in entry.items() if key in ("builder", "split", "num_videos", "paragraph")}
    return ", ".join(f"{key}={value}" for key, value in shown.items()) or json.dumps(entry)


# Hyperparameters shown in the card when the training configuration sets them.
_CARD_HYPERPARAMETERS = (
    "num_frames", "eval_num_frames", "max_length", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio", "weight_decay",
    "num_train_epochs", "max_steps", "max_train_minutes", "bf16", "fp16", "seed", "k_test", "metric_for_best_model",
)


def training_section(training_config: dict | None, trainer_state: dict | None, config_file: str | None,
                     train_results: dict | None = None) -> dict:
    """Training data, initialisation, hyperparameters, the precision trained in and the selected step, from what the
    run left behind (`train_results`: the Trainer's train_results.json, whose `train_precision` finetune.py writes)."""
    section = {"data": [], "start": None, "hyperparameters": [], "state": None, "config_file": config_file,
               "precision": precision_note(training_config, train_results)}
    if training_config:
        for label, key in (("training", "train_data"), ("validation (checkpoint selection)", "validation_data"),
                           ("test (reported once, after selection)", "test_data")):
            entries = training_config.get(key)
            for entry in entries if isinstance(entries, list) else [entries] if entries else []:
                section["data"].append(f"{label}: {_describe_data(entry)}")
        if training_config.get("model_name_or_path"):
            section["start"] = f"the checkpoint `{training_config['model_name_or_path']}`"
        elif training_config.get("clip_model_name_or_path"):
            section["start"] = f"CLIP from `{training_config['clip_model_name_or_path']}`, the rest new"
        elif training_config.get("vision_model_name_or_path"):
            section["start"] = (f"video encoder from `{training_config['vision_model_name_or_path']}`, text encoder "
                                f"from `{training_config.get('text_model_name_or_path')}`, the rest new")
        elif training_config.get("text_model_name_or_path"):
            frozen = training_config.get("freeze_text_layers") or 0
            layers = "layer 0" if frozen == 1 else f"layers 0–{frozen - 1}"
            frozen_note = f"; its embeddings and {layers} frozen in training" if frozen else ""
            section["start"] = (f"text encoder from `{training_config['text_model_name_or_path']}`{frozen_note}; "
                                f"video encoder and fusion layers from scratch (random initialisation"
                                f"{_temporal_start(training_config)})")
        elif training_config.get("model_config"):
            section["start"] = ("from scratch (random initialisation, word vocabulary built from the training "
                                f"captions{_temporal_start(training_config)})")
        section["hyperparameters"] = [(key, json.dumps(training_config[key])) for key in _CARD_HYPERPARAMETERS
                                      if key in training_config]
    if trainer_state:
        step, epoch = trainer_state.get("global_step"), trainer_state.get("epoch")
        parts = []
        if step is not None:
            parts.append(f"Trained for {step} steps" + (f" ({epoch:.2f} epochs)" if isinstance(epoch, (int, float))
                                                        else "") + ".")
        configured = (train_results or {}).get("train_configured_steps")
        if isinstance(configured, int) and isinstance(step, int) and step < configured:
            parts.append(f"The configuration asks for {configured}; its time limit (`max_train_minutes`) cut the run "
                         f"to the steps that fit on the training machine.")
        best_step, best = trainer_state.get("best_global_step"), trainer_state.get("best_metric")
        if best_step is not None and isinstance(best, (int, float)):
            metric = (training_config or {}).get("metric_for_best_model") or "score"
            parts.append(f"The published weights are those of step {best_step}, the best validation {metric} "
                         f"({best:.2f}).")
        section["state"] = " ".join(parts) or None
    return section


def precision_note(training_config: dict | None, train_results: dict | None) -> str | None:
    """
    One sentence on the precision the run trained in, from `train_precision` in train_results.json; None when the run
    did not record it. The hyperparameter table shows `bf16`/`fp16` as configured, and on a CPU without AMX
    (`cpu_bf16_needs_amx`) a `bf16: true` run trains in float32, so the card says which one happened.
    """
    precision = (train_results or {}).get("train_precision")
    if not precision:
        return None
    config = training_config or {}
    requested = "bf16" if config.get("bf16") else "fp16" if config.get("fp16") else "float32"
    note = f"Trained in {precision} (`train_precision` in `train_results.json`)"
    if precision != requested:
        note += f", not the {requested} the configuration asks for"
        if requested == "bf16" and precision == "float32" and config.get("cpu_bf16_needs_amx"):
            note += (": with `cpu_bf16_needs_amx` a CPU run keeps bf16 autocast only on CPUs with AMX tiles, and "
                     "the training CPU had none")
    return note + "."


# ----- results ----------------------------------------------------------------------------------------------------
def table_rows(metrics: dict[str, dict[str, float]]) -> list[dict]:
    """One row per (stage, direction) with R@1/5/10 and MdR/MnR formatted; '–' where a value is absent."""
    rows = []
    for stage in _STAGES:
        values = metrics.get(stage)
        if not values:
            continue
        for direction, label in _DIRECTIONS:
            row = {"stage": stage, "direction": label}
            for name in _TABLE_METRICS:
                value = values.get(f"{direction}_{name}")
                row[name] = "–" if value is None else f"{value:.1f}"
            rows.append(row)
    return rows


def eval_results(metrics: dict[str, dict[str, float]], dataset_type: str, dataset_name: str,
                 split: str | None) -> list[EvalResult]:
    """`model-index` entries: one per (direction, stage, metric) present; `metric_config` names the stage."""
    results = []
    for direction, _ in _DIRECTIONS:
        task_type, task_name = _INDEX_TASKS[direction]
        for stage in _STAGES:
            for name, (metric_type, label) in _INDEX_METRICS.items():
                value = metrics.get(stage, {}).get(f"{direction}_{name}")
                if value is None:
                    continue
                results.append(EvalResult(
                    task_type=task_type, task_name=task_name, dataset_type=dataset_type, dataset_name=dataset_name,
                    dataset_split=split, metric_type=metric_type, metric_name=f"{label} ({stage})",
                    metric_config=stage, metric_value=round(value, 2)))
    return results


# ----- rendering --------------------------------------------------------------------------------------------------
def template_for(model_type: str) -> Path:
    """The card template shipped for `model_type`."""
    if model_type not in TEMPLATES:
        raise ValueError(f"No model card template for model_type={model_type!r}; expected one of {sorted(TEMPLATES)}.")
    path = TEMPLATES_DIR / TEMPLATES[model_type]
    if not path.is_file():
        raise FileNotFoundError(f"The model card template {path} is missing from the installed package "
                                "(it ships as package data of modeling_t2v2t.hub); reinstall t2v2t.")
    return path


def render_model_card(
    config: dict,
    model_name: str,
    repo_id: str | None,
    weights: WeightInfo,
    code_files: list[str],
    num_frames: int | None = None,
    results=None,
    training_config: dict | None = None,
    training_config_file: str | None = None,
    trainer_state: dict | None = None,
    datasets: list[str] | None = None,
    template: str | Path | None = None,
    train_results: dict | None = None,
) -> ModelCard:
    """
    The model card (YAML metadata + Markdown) of a model folder. `results` is a `RetrievalResults` (or `None`:
    "not evaluated"); with results and a dataset (`datasets[0]` or the results' own), the metadata gets a
    `model-index`. Without `repo_id` the card says so and its examples load the local folder `model_name`.
    `train_results` (the Trainer's train_results.json) adds the precision the run actually trained in.
    """
    model_type = config.get("model_type")
    template = Path(template) if template is not None else template_for(model_type)
    if not template.is_file():
        raise FileNotFoundError(f"The model card template {template} does not exist.")
    # A user's template may extend the shipped base template.
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader([str(template.parent), str(TEMPLATES_DIR)]),
                                     keep_trailing_newline=True)

    index = []
    if results is not None:
        dataset = (datasets or [None])[0] or results.dataset
        if dataset:
            index = eval_results(results.metrics, dataset, results.dataset or dataset, results.split)
        else:
            logger.warning("The results in %s name no dataset, so the card's metadata gets no model-index; pass "
                           "--dataset to add one.", results.source)
    tags = _MODEL_TAGS.get(model_type, []) + (["clip"] if config.get("backbone") == "clip" else []) + _TAGS
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        # No pipeline_tag: the Hub has no text-to-video-retrieval task, and "feature-extraction" would promise a
        # pipeline() that custom retrieval code does not provide. Tags make the model findable instead.
        tags=tags,
        datasets=datasets or None,
        metrics=["recall", "median_rank", "mean_rank"],
        model_name=model_name if index else None,
        eval_results=index or None,
    )
    papers = papers_for(config)
    content = environment.get_template(template.name).render(
        card_data=card_data.to_yaml(),
        model_name=model_name,
        repo_id=repo_id,
        load_path=repo_id or f"./{model_name}",
        load_kwargs=", dtype=torch.float32" if weights.half_precision else "",
        weights={"description": weights.description, "half": weights.half_precision,
                 "num_parameters": _format_count(weights.num_parameters)},
        arch=architecture(config, num_frames),
        code_files=code_files,
        training=training_section(training_config, trainer_state, training_config_file, train_results),
        results=None if results is None else {"rows": table_rows(results.metrics), "source": results.source,
                                              "description": results.description()},
        citation_bibtex="\n\n".join(paper.bibtex() for paper in papers),
        cited=" and ".join(paper.short for paper in papers),
    )
    return ModelCard(content)


__all__ = ["PAPERS", "Paper", "WeightInfo", "architecture", "citation_cff", "eval_results", "papers_for",
           "precision_note", "read_weight_info", "render_model_card", "table_rows", "template_for", "training_section"]
