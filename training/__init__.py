"""Training and evaluation for t2v2t: the scripts' arguments (`arguments`), the model factory (`model_factory`), the
data set-up (`data_setup`), `RetrievalTrainer` (`retrieval_trainer`) and the from-scratch word vocabulary
(`word_vocabulary`), plus thin scripts that run both as files and as modules:

    accelerate launch training/finetune.py training/configs/msrvtt_finetune.json
    python -m training.finetune training/configs/synthetic_finetune.json
"""
