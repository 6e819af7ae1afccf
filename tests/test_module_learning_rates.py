"""Per-module learning rates (`--module_learning_rates`, `RetrievalTrainer.create_optimizer`): X-Pool's pooling
trained at its own rate on from-scratch towers, the rest at `--learning_rate`, weight decay kept per parameter."""

import json
from pathlib import Path

import pytest
from transformers import TrainingArguments

from modeling_t2v2t import XPoolConfig, XPoolModel
from training.ablation import run_config
from training.arguments import ModelArguments
from training.retrieval_trainer import RetrievalTrainer

CONFIGS = Path(__file__).parents[1] / "training" / "configs"


def tiny_xpool() -> XPoolModel:
    config = XPoolConfig(
        text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                           image_size=32, patch_size=16, num_frames=2),
        embed_dim=16, pooling_dropout=0.0)
    return XPoolModel(config)


def trainer_for(model, tmp_path, rates):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, learning_rate=1e-3, weight_decay=0.1,
                             report_to="none", lr_scheduler_type="linear", warmup_steps=2)
    return RetrievalTrainer(model=model, args=args, retrieval_loaders=lambda dataset: None,
                            module_learning_rates=rates)


def test_pooling_gets_its_own_rate_and_decay_is_kept(tmp_path):
    model = tiny_xpool()
    trainer = trainer_for(model, tmp_path, {"pooling.": 1e-5})
    optimizer = trainer.create_optimizer()
    decay = set(trainer.get_decay_parameter_names(model))
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    assert len(group_of) == len(names)  # every parameter, once
    for name, parameter in names.items():
        group = group_of[id(parameter)]
        assert group["lr"] == (1e-5 if name.startswith("pooling.") else 1e-3), name
        assert group["weight_decay"] == (0.1 if name in decay else 0.0), name
    assert any(name.startswith("pooling.") for name in names) and any(name in decay for name in names)
    # The scheduler scales each group from its own rate: after 1 of 2 warmup steps, both are at half.
    scheduler = trainer.create_scheduler(num_training_steps=10, optimizer=optimizer)
    optimizer.step()  # no gradients: changes nothing, keeps the scheduler's order check quiet
    scheduler.step()
    rates = sorted({round(group["lr"], 12) for group in optimizer.param_groups})
    assert rates == [5e-6, 5e-4]


def test_without_module_rates_the_trainer_default_is_used(tmp_path):
    optimizer = trainer_for(tiny_xpool(), tmp_path, None).create_optimizer()
    assert {group["lr"] for group in optimizer.param_groups} == {1e-3} and len(optimizer.param_groups) == 2


def test_bad_rates_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"no trainable parameter of XPoolModel starts with \['poolng\.'\]"):
        trainer_for(tiny_xpool(), tmp_path, {"poolng.": 1e-5}).create_optimizer()
    with pytest.raises(ValueError, match="module_learning_rates: the rate of 'pooling.' must be a number >= 0"):
        ModelArguments(model_config='{"model_type": "xpool"}', module_learning_rates='{"pooling.": -1}')
    arguments = ModelArguments(model_config='{"model_type": "xpool"}', module_learning_rates='{"pooling.": 1e-5}')
    assert arguments.module_learning_rates == {"pooling.": 1e-5}


def test_synthetic_xpool_configs_use_the_from_scratch_recipe():
    # X-Pool's CLIP settings (dropout 0.3, pooling at the towers' rate) leave it at chance on from-scratch towers
    # (results/xpool_from_scratch.md): both synthetic configs must carry the fix.
    ablation = json.loads((CONFIGS / "ablation" / "synthetic.json").read_text())
    runs = [run_config(ablation, "xpool", 0, "unused"), json.loads((CONFIGS / "synthetic_xpool.json").read_text())]
    for run in runs:
        arguments = ModelArguments(model_config=run["model_config"], module_learning_rates=run["module_learning_rates"])
        assert arguments.model_config["model_type"] == "xpool"
        assert arguments.model_config["pooling_dropout"] == 0.0
        assert arguments.module_learning_rates == {"pooling.": 1e-5} and run["learning_rate"] > 1e-5
