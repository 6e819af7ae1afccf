"""`RetrievalTrainer`: the plain `transformers.Trainer` (the model computes its own loss), plus retrieval
evaluation of the validation gallery so checkpoints are kept by validation mean recall, and optional batches
grouped by media type (images and videos cannot share a tensor) for pretraining.

Data plumbing is passed in (`retrieval_loaders`, `train_batch_sampler`), so this file does not depend on the data
package.
"""

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.utils import logging

from modeling_t2v2t.retrieval.evaluation import evaluate_two_stage
from modeling_t2v2t.retrieval.families import FamilyLabels, flatten_family_metrics, flatten_top1_metrics
from modeling_t2v2t.retrieval.query_ranks import ranks_record

logger = logging.get_logger(__name__)

# The batch key where the collator reports clips it skipped (processing.batching.SKIPPED_KEY; not imported: this
# file does not depend on the data package).
SKIPPED_KEY = "num_skipped"
# Kernels for scaled-dot-product attention in CPU training steps (`cpu_training_attention`).
CPU_TRAINING_ATTENTION = ("math", "default")


class RetrievalTrainer(Trainer):
    """
    Args (besides `Trainer`'s):
        retrieval_loaders: `dataset -> (caption_loader, video_loader, text_to_video, num_videos)` for a gallery
            (`processing.batching.retrieval_loaders` with the processor bound).
        k_test: candidates reranked per query during evaluation (VindLU's `k_test`); 0 = embedding only.
        train_batch_sampler: optional sampler yielding whole batches of train indices (e.g.
            `processing.batching.MediaTypeBatchSampler`); `accelerate` shards its batches across processes.
        module_learning_rates: `{parameter-name prefix: learning rate}` for some modules (e.g. X-Pool's
            `"pooling."` on from-scratch towers); the rest use `args.learning_rate`. The scheduler scales every group.
        cpu_training_attention: `"math"` (default): on CPU, training steps (forward and backward) run attention
            with PyTorch's math kernel. Its backward is faster than the flash kernel's for short sequences: a
            training step of the ablation's models took about 1.1-1.4x less time with it
            (`benchmarks/training_step_cost.py`, its last two columns), while in a one-off check inference was faster
            with the default kernel, which evaluation keeps. `"default"`: PyTorch's own choice.

    `evaluate()` returns `{prefix}_{embedding|reranked}_{metric}` for every retrieval metric, and
    `{prefix}_mean_recall` (reranked when the model has a joint encoder, else embedding), and per-family win rates
    (`{prefix}_family_{stage}_{family}`, see `modeling_t2v2t.retrieval.families`) when the gallery has family
    labels, with reranking's gain over the embedding stage per family and its bootstrap interval over video pairs
    (`{prefix}_family_gain[_low|_high]_{family}`). Set
    `metric_for_best_model="mean_recall"` with `load_best_model_at_end=True` to keep the best validation checkpoint.
    Pass only the validation split as `eval_dataset`; the test split is for the final report, never for selection.
    `evaluate(..., save_ranks=True)` also writes every query's rank to `OUTPUT_DIR/{prefix}_ranks.json`
    (`modeling_t2v2t.retrieval.query_ranks.ranks_record`), for paired statistics across runs.

    Skipped clips: a batch's `"num_skipped"` (from `VideoTextCollator(skip_bad=True)`, counted in whichever
    DataLoader worker decoded it) is popped before the model and summed; `train()` adds the total over all processes
    to its metrics as `train_skipped_items` and logs it. A batch in which every clip was skipped has nothing to train
    on: its step is skipped (loss 0, no gradient). In multi-process (DDP) training such a step would leave the other
    processes waiting in their gradient all-reduce, so keep batches large enough that one is never entirely broken.
    """

    def __init__(self, *args, retrieval_loaders: Callable, k_test: int = 128, train_batch_sampler=None,
                 module_learning_rates: dict[str, float] | None = None, cpu_training_attention: str = "math",
                 **kwargs):
        if cpu_training_attention not in CPU_TRAINING_ATTENTION:
            raise ValueError(f"cpu_training_attention must be one of {CPU_TRAINING_ATTENTION}, got "
                             f"{cpu_training_attention!r}.")
        super().__init__(*args, **kwargs)
        self.cpu_training_attention = cpu_training_attention
        self._skipped_items = 0  # this process, this train() call
        self.retrieval_loaders = retrieval_loaders
        self.k_test = k_test
        self.train_batch_sampler = train_batch_sampler
        self.module_learning_rates = dict(module_learning_rates or {})

    def create_optimizer(self, model=None):
        """`Trainer`'s optimizer, with one parameter group per (module learning rate, weight decay or not)."""
        if not self.module_learning_rates or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        groups, matched = {}, set()
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            prefix = next((prefix for prefix in self.module_learning_rates if name.startswith(prefix)), None)
            matched.add(prefix)
            groups.setdefault((prefix, name in decay), []).append(parameter)
        unmatched = sorted(set(self.module_learning_rates) - matched)
        if unmatched:
            raise ValueError(f"module_learning_rates: no trainable parameter of {type(model).__name__} starts with "
                             f"{unmatched}.")
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(
            [{"params": params, "weight_decay": self.args.weight_decay if decays else 0.0,
              **({} if prefix is None else {"lr": self.module_learning_rates[prefix]})}
             for (prefix, decays), params in groups.items()], **optimizer_kwargs)
        logger.info("Learning rates: %s for parameters starting with %s, %g for the rest.",
                    list(self.module_learning_rates.values()), list(self.module_learning_rates),
                    self.args.learning_rate)
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        skipped = inputs.pop(SKIPPED_KEY, None)
        if skipped is not None:
            self._skipped_items += int(skipped.sum())
        if not inputs.keys() - {"return_loss"}:  # every clip of the batch was skipped
            return torch.zeros((), device=self.args.device)
        with self._training_attention_kernel():  # Trainer.training_step runs the forward and the backward
            return super().training_step(model, inputs, num_items_in_batch)

    def _training_attention_kernel(self):
        if self.cpu_training_attention == "math" and self.args.device.type == "cpu":
            return sdpa_kernel(SDPBackend.MATH)
        return contextlib.nullcontext()

    def train(self, *args, **kwargs):
        """`Trainer.train`, plus `train_skipped_items` in the returned metrics: clips skipped by the collator,
        summed over DataLoader workers and processes (also logged)."""
        self._skipped_items = 0
        if self.cpu_training_attention == "math" and self.args.device.type == "cpu":
            logger.info("Training steps on CPU run attention with PyTorch's math kernel (cpu_training_attention).")
        result = super().train(*args, **kwargs)
        local = torch.tensor([self._skipped_items], device=self.accelerator.device)
        total = int(self.accelerator.reduce(local, reduction="sum").item())
        result.metrics["train_skipped_items"] = total
        if total:
            logger.warning(f"{total} training clips could not be decoded and were skipped (summed over DataLoader "
                           f"workers and {self.accelerator.num_processes} process(es)).")
        return result

    def get_train_dataloader(self) -> DataLoader:
        if self.train_batch_sampler is None:
            return super().get_train_dataloader()
        workers = self.args.dataloader_num_workers
        # Trainer's own loader honours these; a batch-sampler loader must too: without persistent workers every
        # epoch starts new workers and the decoded-video cache (processing.frame_cache) is rebuilt each epoch.
        loader = DataLoader(
            self.train_dataset, batch_sampler=self.train_batch_sampler, collate_fn=self.data_collator,
            num_workers=workers, pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=self.args.dataloader_prefetch_factor if workers > 0 else None,
        )
        return self.accelerator.prepare(loader)

    def _retrieval_metrics(self, dataset, metric_key_prefix: str, save_ranks: bool = False) -> dict[str, float]:
        captions, videos, text_to_video, num_videos = self.retrieval_loaders(dataset)
        was_training = self.model.training
        result = evaluate_two_stage(
            self.model, captions, videos, text_to_video, num_videos, k=self.k_test or None,
            rerank=False if self.k_test == 0 else None, progress=not self.args.disable_tqdm,
            family_labels=FamilyLabels.from_dataset(dataset), query_ranks=save_ranks,
        )
        self.model.train(was_training)
        if save_ranks:
            path = Path(self.args.output_dir) / f"{metric_key_prefix}_ranks.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(ranks_record(result.ranks, text_to_video, num_videos, dataset)))
            logger.info(f"Per-query ranks of the {metric_key_prefix} split: {path}")
        metrics = {f"{metric_key_prefix}_{stage}_{name}": value
                   for stage, values in result.metrics.items() for name, value in values.items()}
        selected = result.metrics.get("reranked", result.metrics["embedding"])
        metrics[f"{metric_key_prefix}_mean_recall"] = selected["mean_recall"]
        metrics[f"{metric_key_prefix}_num_pairs_scored"] = result.num_pairs_scored
        metrics[f"{metric_key_prefix}_num_videos"] = num_videos  # which gallery was scored (checked in tests)
        metrics.update(flatten_family_metrics(result.families, metric_key_prefix, result.family_gains))
        metrics.update(flatten_top1_metrics(result.top1, metric_key_prefix))
        return metrics

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval",
                 save_ranks: bool = False) -> dict[str, float]:
        """Retrieval metrics of `eval_dataset` (default: the validation split); `save_ranks` also writes every
        query's rank to `OUTPUT_DIR/{metric_key_prefix}_ranks.json` (from the process that evaluates)."""
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if dataset is None:
            raise ValueError("RetrievalTrainer.evaluate needs a gallery: pass eval_dataset (the validation split).")
        # One process evaluates the whole gallery (no pairs are split across processes); the others wait and
        # receive the metrics, which every process needs to track the best checkpoint.
        metrics = [self._retrieval_metrics(dataset, metric_key_prefix, save_ranks)
                   if self.args.process_index == 0 else None]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast_object_list(metrics, src=0)
        metrics = metrics[0]
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


__all__ = ["RetrievalTrainer"]
