"""training/ablation.py: run configs, mean ± std over seeds, and a tiny end-to-end ablation."""

import json
import statistics

import pytest
import torch
from test_training import ROOT, run_config
from tiny_models import TINY_MODEL

from training import ablation, ablation_report

CONFIG = ROOT / "training" / "configs" / "ablation" / "synthetic.json"


@pytest.mark.parametrize("variant", list(json.loads(CONFIG.read_text())["variants"]))
def test_every_shipped_variant_is_a_finetune_config_with_the_shared_budget(variant, tmp_path):
    from transformers import TrainingArguments

    from training.arguments import ModelArguments, parse_arguments
    from training.arguments import DataArguments

    config = json.loads(CONFIG.read_text())
    run = ablation.run_config(config, variant, seed=1, run_dir=tmp_path / "run")
    (tmp_path / "run.json").write_text(json.dumps(run))
    model_args, data_args, training_args = parse_arguments((ModelArguments, DataArguments, TrainingArguments),
                                                           [str(tmp_path / "run.json")])
    assert training_args.seed == 1 and training_args.output_dir == str(tmp_path / "run")
    for key in ("max_steps", "per_device_train_batch_size", "learning_rate", "eval_steps"):
        assert getattr(training_args, key) == config["shared"][key]  # the same budget for every method
    assert data_args.validation_data != data_args.test_data
    # Every method gets the same towers: the methods differ in what sits on top of them. Text embeddings come from
    # the text layers below T2V2T's fusion_layer (the dual encoder keeps only those); X-Pool and CRET, which have no
    # fusion layers, keep exactly those layers.
    shared = config["shared"]["model_config"]
    assert model_args.model_config["vision_config"] == shared["vision_config"]
    assert model_args.text_model_name_or_path == config["shared"].get("text_model_name_or_path")
    assert model_args.freeze_text_layers == config["shared"].get("freeze_text_layers", 0)
    text = dict(model_args.model_config["text_config"])
    if "model_config_replace" in config["variants"][variant]:
        assert text.pop("num_hidden_layers") == shared["fusion_layer"]
        assert text == {key: value for key, value in shared["text_config"].items() if key != "num_hidden_layers"}
    else:
        assert text == shared["text_config"]
    assert data_args.batch_groups == config["shared"].get("batch_groups")


def fake_run(r1: float, minutes: float, reranked: bool) -> dict:
    test = {}
    for stage in ("embedding", "reranked") if reranked else ("embedding",):
        for direction in ("t2v", "v2t"):
            for metric in ablation_report.METRICS:
                test[f"test_{stage}_{direction}_{metric}"] = r1 + (1 if stage == "reranked" else 0)
    return {"test": test, "train_runtime": minutes * 60, "wall_seconds": minutes * 60 + 5}


def test_summary_is_mean_and_std_over_seeds_of_each_methods_own_scores(tmp_path):
    runs = {"dual": [fake_run(2.0, 1.0, False), fake_run(4.0, 3.0, False)],
            "joint": [fake_run(5.0, 2.0, True), fake_run(6.0, 2.0, True)]}
    table = ablation_report.summarise(runs)
    assert table["dual"]["stage"] == "embedding" and table["joint"]["stage"] == "reranked"
    assert table["dual"]["t2v_R1"] == (3.0, statistics.stdev([2.0, 4.0]))
    assert table["joint"]["v2t_MnR"] == (6.5, statistics.stdev([6.0, 7.0]))  # the reranked numbers (+1)
    assert table["dual"]["train_minutes"] == (2.0, statistics.stdev([1.0, 3.0]))
    assert ablation_report.summarise(runs, stage="embedding")["joint"]["t2v_R1"][0] == 5.5
    text = ablation_report.markdown_table(table, {"dual": "dual encoder"})
    assert "| dual encoder | embedding | 2 | 3.0 ± 1.4 |" in text and "| joint | reranked | 2 | 6.5 ± 0.7 |" in text
    ablation_report.bar_chart(table, {}, chance=0.4, path=tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merge_replaces_leaves_only():
    base = {"model_config": {"fusion_mode": "t2v2t", "text_config": {"hidden_size": 8}}, "seed": 0}
    merged = ablation.merge(base, {"model_config": {"fusion_mode": "none"}})
    assert merged == {"model_config": {"fusion_mode": "none", "text_config": {"hidden_size": 8}}, "seed": 0}
    assert base["model_config"]["fusion_mode"] == "t2v2t"  # not mutated


@pytest.mark.slow
def test_a_tiny_ablation_end_to_end(tmp_path, tmp_path_factory):
    bench = tmp_path_factory.mktemp("synthetic")
    shared = run_config(tmp_path, bench, max_steps=2, num_train_epochs=1, eval_strategy="steps", eval_steps=1,
                        save_strategy="steps", save_steps=1)
    shared.pop("output_dir")
    config = {"_budget": "2 steps", "seeds": [0, 1], "test_videos": 2, "shared": shared,
              "variants": {"dual_encoder": {"_label": "dual encoder", "model_config": {"fusion_mode": "none"}},
                           "t2v2t_self": {"model_config": {"fusion_mode": "t2v2t"}}}}
    (tmp_path / "ablation.json").write_text(json.dumps(config))
    arguments = ["--config", str(tmp_path / "ablation.json"), "--output-dir", str(tmp_path / "runs"),
                 "--results-dir", str(tmp_path / "results")]
    ablation.main(arguments)
    report = (tmp_path / "results" / "ablation.md").read_text()
    assert "| dual encoder | embedding | 2 |" in report and "| t2v2t_self | reranked | 2 |" in report
    assert "| best joint model vs dual encoder | t2v2t_self | dual encoder |" in report
    saved = json.loads(ablation.result_path(tmp_path / "results", "t2v2t_self", 1).read_text())
    assert saved["seed"] == 1 and saved["config_sha256"] == ablation.config_hash(
        ablation.run_config(config, "t2v2t_self", 1, "anywhere"))
    assert len(saved["test_ranks"]["ranks"]["reranked"]["t2v"]) == saved["test_ranks"]["num_captions"]
    seed0 = json.loads((tmp_path / "runs" / "t2v2t_self" / "seed0" / "run.json").read_text())
    assert seed0["seed"] == 0 and seed0["model_config"]["fusion_mode"] == "t2v2t"
    assert seed0["model_config"]["text_config"] == TINY_MODEL["text_config"]
    # two seeds train different models
    from safetensors.torch import load_file

    first, second = (load_file(tmp_path / "runs" / "t2v2t_self" / f"seed{s}" / "model.safetensors") for s in (0, 1))
    assert any(not torch.equal(first[name], second[name]) for name in first)
    # a run whose result is there is not trained again: the second call only re-reads results
    before = ablation.result_path(tmp_path / "results", "dual_encoder", 0).stat().st_mtime_ns
    ablation.main(arguments + ["--variants", "dual_encoder"])
    assert ablation.result_path(tmp_path / "results", "dual_encoder", 0).stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
        ablation.main(["--config", str(tmp_path / "ablation.json"), "--variants", "nope"])
