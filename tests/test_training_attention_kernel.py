"""`cpu_training_attention`: CPU training steps (forward and backward) run attention with PyTorch's math kernel by
default; evaluation and the rest of the process keep PyTorch's own choice."""

import pytest
import torch
from transformers import Trainer, TrainingArguments

from training.arguments import ModelArguments
from training.retrieval_trainer import RetrievalTrainer


def trainer_for(tmp_path, **kwargs):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    return RetrievalTrainer(model=torch.nn.Linear(1, 1), args=args, retrieval_loaders=lambda dataset: None,
                            **kwargs)


@pytest.mark.parametrize("kernel,flash_during_step", [("math", False), ("default", True)])
def test_training_step_attention_kernel(tmp_path, monkeypatch, kernel, flash_during_step):
    seen = {}

    def record(self, model, inputs, num_items_in_batch=None):  # stands in for Trainer's forward + backward
        seen["flash"] = torch.backends.cuda.flash_sdp_enabled()
        seen["math"] = torch.backends.cuda.math_sdp_enabled()
        return torch.zeros(())

    monkeypatch.setattr(Trainer, "training_step", record)
    trainer = trainer_for(tmp_path, cpu_training_attention=kernel)
    assert torch.backends.cuda.flash_sdp_enabled()  # PyTorch's default outside the step
    trainer.training_step(trainer.model, {"input_ids": torch.zeros(1), "return_loss": True})
    assert seen == {"flash": flash_during_step, "math": True}
    assert torch.backends.cuda.flash_sdp_enabled()  # restored after the step


def test_unknown_kernel_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cpu_training_attention must be one of"):
        trainer_for(tmp_path, cpu_training_attention="flash")
    with pytest.raises(ValueError, match="--cpu_training_attention must be one of"):
        ModelArguments(model_config='{"fusion_mode": "none"}', cpu_training_attention="fast")
