"""One plain-Trainer SGD step of a tiny dual encoder (VTC only) on the synthetic benchmark, for
tests/test_training.py: run with 1 process (batch 8) and under `accelerate launch` with 2 processes (batch 4 each);
the same 8 pairs form the global batch in both. Writes the logged loss and the updated weights."""

import json
import sys

import torch
from tiny_models import tiny_config
from transformers import TrainingArguments

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from training.retrieval_trainer import RetrievalTrainer
from training.word_vocabulary import build_word_tokenizer
from processing.batching import VideoTextCollator, caption_pairs
from processing.builders import build


def main(out_dir: str, bench_dir: str, per_device_batch: int) -> None:
    torch.manual_seed(0)
    dataset, _ = build("synthetic", split="train", out_dir=bench_dir, num_videos=8, seed=0, workers=1,
                       progress=False)
    pairs = caption_pairs(dataset).select(range(8))
    tokenizer = build_word_tokenizer(list(pairs["caption"]), f"{out_dir}/tokenizer_{per_device_batch}")
    config = tiny_config(fusion_mode="none", text_config=dict(vocab_size=len(tokenizer), hidden_dropout_prob=0.0,
                                                              attention_probs_dropout_prob=0.0),
                         vision_config=dict(image_size=32, num_frames=2))
    model = T2V2TModel(config)
    processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config.vision_config), tokenizer)
    args = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=per_device_batch, max_steps=1,
                             learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", logging_steps=1,
                             save_strategy="no", report_to="none", use_cpu=True, remove_unused_columns=False,
                             seed=0, disable_tqdm=True)
    # Middle frames (train=False): every process decodes exactly the clips a single process would.
    trainer = RetrievalTrainer(model=model, args=args, train_dataset=pairs,
                               data_collator=VideoTextCollator(processor, train=False), retrieval_loaders=None)
    trainer.train()
    if trainer.is_world_process_zero():
        loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
        weights = {name: p.detach().tolist() for name, p in model.named_parameters() if name.startswith(
            ("text_proj", "vision_proj", "temp"))}
        with open(f"{out_dir}/result_{trainer.args.world_size}.json", "w") as handle:
            json.dump({"loss": loss, "world_size": trainer.args.world_size, "weights": weights}, handle)
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
