"""The training and evaluation scripts explain themselves and take a JSON config with command-line overrides; the
evaluation script's rerank depth comes from the checkpoint's training config, it says which k it used, and it
evaluates every model type (T2V2T, X-Pool on towers and on a tiny random CLIP, CRET)."""

import json
import re
from pathlib import Path

import pytest
import torch
from test_xpool import save_tiny_clip, tiny_xpool_config
from tiny_models import tiny_config, tiny_tokenizer
from transformers import TrainingArguments

from modeling_t2v2t import CRETConfig, CRETModel, T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor, XPoolModel
from training import evaluate_retrieval, finetune, pretrain
from training.arguments import DataArguments, ModelArguments, parse_arguments
from training.model_factory import load_model_and_processor

ROOT = Path(__file__).parents[1]
TRAINING_TYPES = (ModelArguments, DataArguments, TrainingArguments)


# ----- --help -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script, what", [(finetune.main, "Fine-tune a text-to-video retrieval model"),
                                          (pretrain.main, "Pretrain T2V2T"),
                                          (evaluate_retrieval.main, "Evaluate a saved checkpoint")])
def test_help_has_a_description_and_examples(script, what, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    usage = text[:text.index("\n\n")]
    assert usage.count("\n") == 0 and "[CONFIG.json] [--option VALUE ...]" in usage  # one line, not 300 options
    assert what in text
    examples = text[text.index("examples:"):]
    assert re.search(r"\.json --\w+ \S+", examples), "an example of a JSON config with an override"
    assert "--model_name_or_path" in text  # the options are still all listed


def test_help_after_a_config_file_shows_the_help(tmp_path, capsys):
    config = tmp_path / "cfg.json"
    config.write_text("{}")
    with pytest.raises(SystemExit):
        finetune.main([str(config), "--help"])
    assert "Fine-tune a text-to-video retrieval model" in capsys.readouterr().out


# ----- JSON config + overrides --------------------------------------------------------------------------------------
def base_config(tmp_path: Path) -> dict:
    return {"_comment": "ignored", "model_config": {"fusion_mode": "none"}, "output_dir": str(tmp_path / "run"),
            "max_steps": 500, "learning_rate": 3e-4, "k_test": 16, "use_cpu": True, "report_to": "none",
            "train_data": [{"builder": "synthetic", "split": "train"}],
            "validation_data": {"builder": "synthetic", "split": "val"}, "load_best_model_at_end": True,
            "eval_strategy": "steps", "save_strategy": "steps"}


def write(path: Path, values: dict) -> str:
    path.write_text(json.dumps(values))
    return str(path)


def test_json_config_with_overrides(tmp_path):
    config = write(tmp_path / "cfg.json", base_config(tmp_path))
    (model_args, data_args, training_args), merged = parse_arguments(
        TRAINING_TYPES, [config, "--max_steps", "30", "--k_test", "4", "--load_best_model_at_end", "false",
                         "--test_data", '{"builder": "synthetic", "split": "test"}'], return_config=True)
    assert training_args.max_steps == 30 and data_args.k_test == 4  # overridden
    assert training_args.load_best_model_at_end is False
    assert data_args.test_data == {"builder": "synthetic", "split": "test"}  # a JSON-valued option
    assert training_args.learning_rate == 3e-4 and model_args.model_config == {"fusion_mode": "none"}  # from the file
    assert data_args.validation_data == {"builder": "synthetic", "split": "val"}
    assert merged["max_steps"] == 30 and merged["k_test"] == 4 and merged["learning_rate"] == 3e-4
    assert "_comment" not in merged
    json.dumps(merged)  # saved with the run as training_config.json

    # the file alone: its own values (no override leaks in from a default)
    model_args, data_args, training_args = parse_arguments(TRAINING_TYPES, [config])
    assert (training_args.max_steps, data_args.k_test, training_args.load_best_model_at_end) == (500, 16, True)


def test_override_given_in_the_dash_spelling_and_an_unset_to_null(tmp_path):
    config = write(tmp_path / "cfg.json", base_config(tmp_path))
    _, data_args, training_args = parse_arguments(
        TRAINING_TYPES, [config, "--max-steps", "7", "--validation_data", "null", "--load_best_model_at_end",
                         "false", "--eval_strategy", "no", "--save_strategy", "no"])
    assert training_args.max_steps == 7 and data_args.validation_data is None


def test_bad_config_or_override_is_named(tmp_path):
    config = write(tmp_path / "cfg.json", base_config(tmp_path))
    with pytest.raises(ValueError, match="Unknown command-line arguments: --max_stepz 3"):
        parse_arguments(TRAINING_TYPES, [config, "--max_stepz", "3"])
    with pytest.raises(ValueError, match=r"bad\.json: .*max_stepz"):
        parse_arguments(TRAINING_TYPES, [write(tmp_path / "bad.json", {**base_config(tmp_path), "max_stepz": 3})])
    (tmp_path / "broken.json").write_text("{max_steps: 3}")
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        parse_arguments(TRAINING_TYPES, [str(tmp_path / "broken.json"), "--max_steps", "3"])
    with pytest.raises(ValueError, match="must hold one JSON object"):
        parse_arguments(TRAINING_TYPES, [write(tmp_path / "list.json", [1, 2])])


@pytest.mark.slow
def test_finetune_config_plus_override_trains_that_many_steps(tmp_path):
    """The issue's command: `finetune.py cfg.json --max_steps N` trains N steps (it used to fail with "Give exactly
    one model source"), and the saved training_config.json holds the effective values."""
    bench = tmp_path / "bench"
    synthetic = {"builder": "synthetic", "out_dir": str(bench), "num_videos": 8, "seed": 0, "workers": 1,
                 "progress": False}
    config = {"model_config": {"text_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                                               "intermediate_size": 48, "max_position_embeddings": 64},
                               "vision_config": {"image_size": 32, "patch_size": 16, "hidden_size": 32,
                                                 "num_hidden_layers": 1, "num_attention_heads": 4,
                                                 "intermediate_size": 48},
                               "fusion_layer": 1, "embed_dim": 16},
              "num_frames": 2, "train_data": [{**synthetic, "split": "train"}], "validation_data": None,
              "output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 4, "max_steps": 50,
              "k_test": 16, "logging_steps": 1, "save_strategy": "no", "use_cpu": True, "report_to": "none",
              "disable_tqdm": True}
    trainer, _ = finetune.main([write(tmp_path / "cfg.json", config), "--max_steps", "2", "--k_test", "3"])
    assert trainer.state.global_step == 2
    saved = json.loads((tmp_path / "run" / "training_config.json").read_text())
    assert saved["max_steps"] == 2 and saved["k_test"] == 3 and saved["num_frames"] == 2


# ----- evaluation: k from the training config, every model type ----------------------------------------------------
@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


def dataset_kwargs(bench: Path) -> str:
    return json.dumps({"split": "test", "out_dir": str(bench), "num_videos": 8, "workers": 1, "progress": False})


def save_checkpoint(folder: Path, model, config, training_config: dict | None = None) -> Path:
    model.save_pretrained(folder)
    T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config.vision_config), tiny_tokenizer(folder / "tok"),
                   max_length=16).save_pretrained(folder)
    if training_config is not None:
        (folder / "training_config.json").write_text(json.dumps(training_config))
    return folder


def evaluate(checkpoint: Path, bench: Path, *extra: str) -> dict:
    return evaluate_retrieval.main(["--model_name_or_path", str(checkpoint), "--dataset", "synthetic",
                                    "--dataset_kwargs", dataset_kwargs(bench), *extra])


def test_evaluation_k_comes_from_the_training_config(tmp_path, bench, capsys):
    torch.manual_seed(0)
    config = tiny_config(vision_config=dict(image_size=32, num_frames=2))
    model = T2V2TModel(config)
    with_config = save_checkpoint(tmp_path / "trained", model, config, {"k_test": 1, "max_steps": 10})
    report = evaluate(with_config, bench)
    out = capsys.readouterr().out
    assert report["k"] == 1 and "training_config.json" in report["k_source"]
    assert f"Rerank depth: reranking the top k=1 candidates per query (k_test of {with_config}" in out
    # k=1 reranks one candidate per query: reranked R@1 can only come from the embedding's top 1.
    assert report["metrics"]["reranked"]["t2v_R1"] == report["metrics"]["embedding"]["t2v_R1"]

    explicit = evaluate(with_config, bench, "--k", "2")
    assert explicit["k"] == 2 and explicit["k_source"] == "--k" and explicit["num_pairs_scored"] > \
        report["num_pairs_scored"]

    bare = save_checkpoint(tmp_path / "bare", model, config)
    default = evaluate(bare, bench)
    assert default["k"] == evaluate_retrieval.DEFAULT_K == DataArguments.k_test == 128
    assert default["k_source"].startswith("default") and "Rerank depth:" in capsys.readouterr().out


def tiny_xpool_on_clip(folder: Path) -> Path:
    clip_folder = folder / "clip"
    save_tiny_clip(clip_folder)
    model, processor = load_model_and_processor(
        ModelArguments(clip_model_name_or_path=str(clip_folder), num_frames=2, max_length=24), pretraining=False)
    model.save_pretrained(folder / "xpool")
    processor.save_pretrained(folder / "xpool")
    return folder / "xpool"


@pytest.mark.parametrize("model_type", ["xpool_clip", "xpool", "cret", "dual_encoder"])
def test_evaluation_works_for_every_model_type(model_type, tmp_path, bench, capsys):
    torch.manual_seed(0)
    if model_type == "xpool_clip":
        checkpoint = tiny_xpool_on_clip(tmp_path)
    else:
        towers = tiny_config(vision_config=dict(image_size=32, num_frames=2))
        if model_type == "xpool":
            model = XPoolModel(tiny_xpool_config(vision_config=towers.vision_config.to_dict()))
        elif model_type == "cret":
            model = CRETModel(CRETConfig(text_config=towers.text_config.to_dict(),
                                         vision_config=towers.vision_config.to_dict(), embed_dim=16))
        else:
            model = T2V2TModel(tiny_config(fusion_mode="none", vision_config=dict(image_size=32, num_frames=2)))
        checkpoint = save_checkpoint(tmp_path / model_type, model, towers, {"k_test": 4})
    report = evaluate(checkpoint, bench)
    out = capsys.readouterr().out
    expected_class = {"xpool_clip": "XPoolModel", "xpool": "XPoolModel", "cret": "CRETModel",
                      "dual_encoder": "T2V2TModel"}[model_type]
    assert report["model_class"] == expected_class
    assert report["num_videos"] == 2 and set(report["metrics"]) == {"embedding"} and report["reranked"] is False
    assert 0 <= report["metrics"]["embedding"]["t2v_R1"] <= 100
    assert f"no reranking: {expected_class} has no joint encoder" in out
