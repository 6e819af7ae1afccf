"""Pretrain T2V2T on video-text and image-text corpora (VTC + VTM + MLM), image and video batches mixed, with the
plain `Trainer`. Same arguments as finetune.py (see there); the model is `T2V2TForPreTraining`.

    accelerate launch training/pretrain.py training/configs/pretrain_5m.json
    python training/pretrain.py training/configs/synthetic_pretrain.json
"""

from training.finetune import main

if __name__ == "__main__":
    main(pretraining=True)
