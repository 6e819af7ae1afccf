"""Pretrain T2V2T on video-text and image-text corpora (VTC + VTM + MLM), image and video batches mixed, with the
plain `Trainer`. Same arguments as finetune.py (see there); the model is `T2V2TForPreTraining`.

    accelerate launch training/pretrain.py training/configs/pretrain_5m.json
    accelerate launch training/pretrain.py training/configs/pretrain_5m.json --max_steps 1000   # config + override
"""

from training import finetune

DESCRIPTION = """\
Pretrain T2V2T (T2V2TForPreTraining) on video-text and image-text corpora with the plain transformers Trainer:
VTC + VTM + MLM (50% masking through the joint encoder). Image corpora (e.g. CC3M, 1-frame videos) and video
corpora (e.g. WebVid) are mixed in one training set, each batch holding one media type. Everything else (data
specs, evaluation, checkpoint selection, the saved Hub folder) is as in finetune.py; only T2V2T has a pretraining
variant.

Arguments come from the command line, from one JSON config file, or from a JSON config file followed by
overrides (the file's values, then the options given).

The main arguments (all of them are listed below):
  model (one source)  --vision_model_name_or_path BEiT + --text_model_name_or_path BERT | --model_name_or_path CKPT
                      | --model_config '{...}' (from scratch)
  data                --train_data '[{"builder": "webvid", ...}, {"builder": "cc3m", ...}]'  --validation_data '{...}'
  training            --output_dir DIR  --max_steps / --num_train_epochs  --learning_rate  --bf16
"""

EXAMPLES = """\
examples:
  accelerate launch training/pretrain.py training/configs/pretrain_5m.json
  accelerate launch training/pretrain.py training/configs/pretrain_5m.json --max_steps 1000 --output_dir outputs/short
  python -m training.pretrain --vision_model_name_or_path BEIT --text_model_name_or_path BERT --output_dir outputs/pt \\
      --train_data '[{"builder": "webvid", ...}]' --validation_data null

A JSON config's keys are the option names without "--"; keys starting with "_" are comments.
"""


def main(argv=None):
    """Run pretraining with `argv` (default: the command line); returns what `finetune.main` returns."""
    return finetune.main(argv, pretraining=True, description=DESCRIPTION, examples=EXAMPLES)


if __name__ == "__main__":
    main()
