"""Fine-tune T2V2T for text-to-video retrieval (VTC + VTM) with the plain `Trainer`, keeping the checkpoint with the
best validation mean recall; optionally report the test split once at the end.

    accelerate launch training/finetune.py training/configs/msrvtt_finetune.json
    python training/finetune.py training/configs/synthetic_finetune.json
    python training/finetune.py --model_name_or_path CKPT --train_data '[{"builder": "msrvtt", ...}]' ...

Arguments: `ModelArguments` and `DataArguments` (training.arguments) and
`transformers.TrainingArguments`, from the command line, one JSON file, or a JSON file followed by command-line
overrides (`finetune.py cfg.json --max_steps 30`); `--help` lists them.
"""

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import datasets
import torch
import transformers
from transformers import TrainingArguments, set_seed

import modeling_t2v2t  # noqa: F401  (registers the Auto classes)
from modeling_t2v2t import save_hub_folder
from modeling_t2v2t.retrieval.evaluation import metric_conventions
from modeling_t2v2t.retrieval.families import (format_family_table, format_top1_table, unflatten_family_gains,
                                               unflatten_family_metrics, unflatten_top1_metrics)
from modeling_t2v2t.retrieval.metrics import format_metrics_table
from processing.text_cleaning import clean_caption
from training.arguments import DataArguments, ModelArguments, parse_arguments
from training.checkpoints import resolve_resume_checkpoint
from training.cpu_allocator import log_allocator
from training.cpu_precision import apply_cpu_bf16_policy, training_precision, usable_cpus
from training.data_setup import (build_training_data, gallery_loaders, neighbour_regroup_callback, train_batch_sampler,
                                 training_collator, warn_shared_videos)
from training.frozen_text_cache import FrozenTextStageCache
from training.model_factory import load_model_and_processor
from training.retrieval_trainer import RetrievalTrainer
from training.time_budget import TrainingDeadlineCallback

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Fine-tune a text-to-video retrieval model (T2V2T, or the X-Pool / CRET / dual-encoder baselines) with the plain
transformers Trainer: VTC + VTM losses, evaluation of the validation split by retrieval (embedding and reranked
recall), the checkpoint with the best validation mean recall kept, the test split reported once at the end, and
the result saved as a Hub-ready folder (safetensors, config with auto_map, processor, code).

Arguments come from the command line, from one JSON config file, or from a JSON config file followed by
overrides (the file's values, then the options given). training/configs/ has ready configs.

The main arguments (all of them are listed below):
  model (one source)  --model_name_or_path CKPT | --vision_model_name_or_path + --text_model_name_or_path |
                      --clip_model_name_or_path CLIP (X-Pool) | --model_config '{...}' (from scratch)
  data                --train_data '[{"builder": "msrvtt", "split": "train_9k", ...}]'  --validation_data '{...}'
                      --test_data '{...}'  --k_test 128 (candidates reranked per query at evaluation)
  training            --output_dir DIR  --max_steps / --num_train_epochs  --learning_rate
                      --per_device_train_batch_size  --bf16  --resume_from_checkpoint true
"""

EXAMPLES = """\
examples:
  python training/finetune.py training/configs/synthetic_finetune.json
  python training/finetune.py training/configs/synthetic_finetune.json --max_steps 30 --output_dir outputs/try
  accelerate launch training/finetune.py training/configs/msrvtt_finetune.json
  python -m training.finetune --model_name_or_path CKPT --output_dir outputs/run \\
      --train_data '[{"builder": "msrvtt", "split": "train_9k", "annotation_dir": "msrvtt_data", "video_root": "videos"}]'

A JSON config's keys are the option names without "--"; keys starting with "_" are comments. The run's effective
configuration is saved as OUTPUT_DIR/training_config.json (evaluate_retrieval.py and push_to_hub.py read it); the
test split's metrics as OUTPUT_DIR/test_results.json and every test query's rank as OUTPUT_DIR/test_ranks.json.
"""


def metrics_table(metrics: dict, prefix: str) -> str:
    runs = {stage: {name[len(f"{prefix}_{stage}_"):]: value for name, value in metrics.items()
                    if name.startswith(f"{prefix}_{stage}_")} for stage in ("embedding", "reranked")}
    return format_metrics_table({stage: values for stage, values in runs.items() if values})


def set_torch_threads(num_workers: int) -> int:
    """
    Compute threads for this process, set deliberately and logged: `$OMP_NUM_THREADS` if set, else every usable CPU.
    On a quiet 2-core machine the quickstart trained at 0.51 s/step with 2 threads against 0.63 s/step with 1 (its one
    data-loading worker mostly reads a decoded-frame cache); on a machine busy with other processes, 2 threads ran a
    step about 10x slower than 1, so there set `OMP_NUM_THREADS=1` (the log line says so).
    """
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        threads = int(os.environ["OMP_NUM_THREADS"])
    else:
        threads = usable_cpus()
    torch.set_num_threads(threads)
    logger.info("torch uses %d compute thread(s) beside %d data-loading worker(s); on a machine busy with other "
                "work, OMP_NUM_THREADS=1 avoids oversubscribing the cores.", threads, num_workers)
    return threads


def check_labelled_negatives(data_args: DataArguments, config) -> None:
    """Labelled VTM negatives need a model that draws them; a model that would draw them is told when none come."""
    probability = getattr(config, "vtm_labelled_negative_prob", 0.0)
    joint = getattr(config, "has_joint_encoder", False)
    if data_args.labelled_negative_factors is not None and not (joint and probability > 0):
        raise ValueError("--labelled_negative_factors marks VTM negatives, but this model would never draw them: it "
                         "needs a T2V2T joint encoder with model_config vtm_labelled_negative_prob > 0 (got "
                         f"{type(config).__name__} with {'a' if joint else 'no'} joint encoder and probability "
                         f"{probability}).")
    if data_args.labelled_negative_factors is None and joint and probability > 0:
        logger.warning("vtm_labelled_negative_prob is %s but no --labelled_negative_factors are given: VTM draws its "
                       "negatives as if it were 0.", probability)


def check_contrast_captions(data_args: DataArguments, config) -> None:
    """Contrast captions need a model that uses them; a model that would use them is told when none come."""
    used = [name for name in ("vtm_contrast_captions", "vtc_contrast_captions") if getattr(config, name, False)]
    if data_args.contrast_caption_factors is not None and not used:
        raise ValueError("--contrast_caption_factors adds contrast captions, but this model would not use them: it "
                         "needs a T2V2T config with model_config vtm_contrast_captions or vtc_contrast_captions true "
                         f"(got {type(config).__name__} with neither).")
    if data_args.contrast_caption_factors is None and used:
        logger.warning("%s is on but no --contrast_caption_factors are given: training sees no contrast captions.",
                       " and ".join(used))


def main(argv=None, pretraining: bool = False, description: str = DESCRIPTION, examples: str = EXAMPLES):
    started = time.time()  # --max_train_minutes counts from here
    argv = sys.argv[1:] if argv is None else argv
    (model_args, data_args, training_args), run_config = parse_arguments(
        (ModelArguments, DataArguments, TrainingArguments), argv, description=description, epilog=examples,
        return_config=True)
    # The collator decodes paths and tokenises captions itself: keep the dataset columns it reads.
    training_args.remove_unused_columns = False
    # Checkpoints are selected by validation retrieval, which has no loss (transformers' default metric).
    if data_args.validation_data is not None and training_args.metric_for_best_model in (None, "loss", "eval_loss"):
        training_args.metric_for_best_model, training_args.greater_is_better = "mean_recall", True

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if training_args.process_index == 0 else logging.WARNING)
    transformers.utils.logging.set_verbosity(logging.INFO if training_args.process_index == 0 else logging.WARNING)
    datasets.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    if training_args.use_cpu or not torch.cuda.is_available():
        set_torch_threads(training_args.dataloader_num_workers)
        log_allocator()
        apply_cpu_bf16_policy(training_args, model_args.cpu_bf16_needs_amx)
    # "true": the newest COMPLETE checkpoint in output_dir; one cut short by a kill during a save is passed over.
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)

    # 1. Data (rendered / built once, by the main process first).
    with training_args.main_process_first(desc="building datasets"):
        train_pairs, validation, test, train_videos = build_training_data(data_args, return_videos=True)
    warn_shared_videos(train_pairs, validation, test)
    logger.info("Training on %d caption-video pairs; validation %s videos; test %s videos", len(train_pairs),
                len(validation) if validation is not None else "no", len(test) if test is not None else "no")

    # 2. Model and processor (a word vocabulary is built from the captions when training from scratch).
    with training_args.main_process_first(desc="building the model"):
        model, processor = load_model_and_processor(
            model_args, pretraining, output_dir=training_args.output_dir,
            # the vocabulary of a from-scratch model must hold the words training will see: cleaned captions
            captions=[clean_caption(caption, data_args.max_words) for caption in train_pairs["caption"]])

    text_cache = None
    if model_args.frozen_text_cache_mb:
        text_cache = FrozenTextStageCache(model.base_model.text_model, model_args.frozen_text_cache_mb).install()
    check_labelled_negatives(data_args, model.config)
    check_contrast_captions(data_args, model.config)

    batch_sampler = train_batch_sampler(data_args, train_videos, train_pairs, training_args.per_device_train_batch_size,
                                        training_args.seed, training_args.dataloader_drop_last)
    # 3. The plain Trainer optimises; RetrievalTrainer adds gallery evaluation and media-grouped batches.
    trainer = RetrievalTrainer(
        model=model, args=training_args, train_dataset=train_pairs, eval_dataset=validation,
        data_collator=training_collator(data_args, processor, model_args.num_frames, train_videos),
        processing_class=processor,
        retrieval_loaders=gallery_loaders(data_args, processor, training_args.per_device_eval_batch_size,
                                          training_args.dataloader_num_workers),
        k_test=data_args.k_test, module_learning_rates=model_args.module_learning_rates,
        cpu_training_attention=model_args.cpu_training_attention,
        train_batch_sampler=batch_sampler,
    )
    regroup = neighbour_regroup_callback(data_args, batch_sampler, train_pairs, train_videos, processor,
                                         training_args.seed, progress=not training_args.disable_tqdm)
    if regroup is not None:
        trainer.add_callback(regroup)
    if model_args.max_train_minutes is not None:
        trainer.add_callback(TrainingDeadlineCallback(trainer, started + 60 * model_args.max_train_minutes,
                                                      reserve_steps=model_args.train_time_reserve_steps))
    train_result = trainer.train(resume_from_checkpoint=resume)
    if text_cache is not None:
        text_cache.uninstall()
        logger.info("Frozen text-stage cache: %d captions (%.0f MB); %d rows read from it, %d computed.",
                    len(text_cache.memo), text_cache.stored_bytes / 2**20, text_cache.hits, text_cache.misses)
    train_result.metrics["train_precision"] = training_precision(training_args)  # after --cpu_bf16_needs_amx
    # Steps run against steps configured: fewer when --max_train_minutes cut the run.
    train_result.metrics["train_steps"] = train_result.global_step
    train_result.metrics["train_configured_steps"] = training_args.max_steps
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)  # train_results.json: runtime, steps, loss

    # 4. The (best) model as a Hub-ready folder: safetensors, config with auto_map, code files, processor.
    if trainer.is_world_process_zero():
        save_hub_folder(trainer.model, processor, training_args.output_dir)
        trainer.save_state()
        # The run's config travels with it (push_to_hub and evaluate_retrieval read it): the file itself, or the
        # file's values with the command-line overrides applied.
        if run_config is not None and len(argv) == 1:
            shutil.copyfile(argv[0], Path(training_args.output_dir) / "training_config.json")
        elif run_config is not None:
            (Path(training_args.output_dir) / "training_config.json").write_text(json.dumps(run_config, indent=2))

    # 5. The test split, once, after selection.
    test_metrics = None
    if test is not None:
        test_metrics = trainer.evaluate(test, metric_key_prefix="test", save_ranks=True)  # + test_ranks.json
        if trainer.is_world_process_zero():
            # RetrievalTrainer evaluates with evaluate_two_stage's default video->text convention (VindLU's).
            conventions = "\n".join(f"{direction}: {label}" for direction, label in metric_conventions().items())
            print(f"\nTest split ({len(test)} videos):\n{metrics_table(test_metrics, 'test')}\n{conventions}\n")
            families = unflatten_family_metrics(test_metrics, "test")
            if families:
                print(f"Hard-negative families (t2v: % of caption-sibling pairs where the caption's own video "
                      f"scores higher):\n"
                      f"{format_family_table(families, gains=unflatten_family_gains(test_metrics, 'test'))}\n")
            top1 = unflatten_top1_metrics(test_metrics, "test", sum(len(captions) for captions in test["captions"]))
            if top1:
                print(f"Where each caption's top-ranked video falls (t2v):\n{format_top1_table(top1)}\n")
            trainer.save_metrics("test", test_metrics)
    trainer.accelerator.wait_for_everyone()
    logger.info("Finished: %d steps; %d training clips skipped as undecodable (all workers and processes%s).",
                train_result.global_step, train_result.metrics["train_skipped_items"],
                "" if data_args.skip_bad else "; skip_bad is off, so any bad clip would have stopped the run")
    trainer.accelerator.end_training()  # a clean exit under accelerate launch (see ENVIRONMENT.md)
    return trainer, test_metrics


if __name__ == "__main__":
    main()
