"""Convert an official VindLU checkpoint (github.com/klauscc/VindLU, e.g. its 5M-pretrained `ckpt_best.pth`) into a
T2V2T checkpoint: VindLU's weights renamed into T2V2T's modules, the text->video (T2V2T fusion) layers newly
initialised, temporal/position embeddings resized to the chosen frame count and image size as VindLU resizes them
(temporal rows cut, or padded with zero rows; BEiT's relative position tables by its geometric-progression cubic rule).

    python training/convert_vindlu_checkpoint.py vindlu_5m/ckpt_best.pth checkpoints/t2v2t-pretrained-5m \\
        --tokenizer bert-base-uncased --num-frames 12
    python training/convert_vindlu_checkpoint.py ckpt.pth out --fusion-mode v2t     # VindLU's model and match score
    python training/convert_vindlu_checkpoint.py ckpt.pth out --config overrides.json

The model is sized like the checkpoint; `--config` (T2V2TConfig fields as JSON, e.g. a T2V2T config.json or just
`{"bypass_mode": "null", "num_t2v_layers": 2}`) and the flags override what is inferred. Prints which weights were
converted, newly initialised, unused or resized; `conversion_report.json` in the output folder records the same.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from transformers.utils import logging as transformers_logging

from modeling_t2v2t.configuration_t2v2t import FUSION_MODES
from modeling_t2v2t.conversion.vindlu import convert_vindlu_checkpoint, save_converted


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="VindLU checkpoint (.pth with the weights under 'model')")
    parser.add_argument("output_dir", help="folder for the T2V2T checkpoint (safetensors)")
    parser.add_argument("--config", help="JSON file of T2V2TConfig fields overriding those inferred from the weights")
    parser.add_argument("--fusion-mode", choices=FUSION_MODES, help="default: t2v2t (v2t = VindLU's own model)")
    parser.add_argument("--num-frames", type=int,
                        help="frames the temporal embedding is sized for (VindLU: first rows, or new zero rows)")
    parser.add_argument("--image-size", type=int, help="frame size (relative position tables resized by BEiT's "
                                                          "geometric-progression cubic rule)")
    parser.add_argument("--model-class", choices=("auto", "model", "pretraining"), default="auto",
                        help="T2V2TModel, T2V2TForPreTraining (keeps the MLM head) or auto (pretraining if the "
                             "checkpoint has an MLM head)")
    parser.add_argument("--tokenizer", help="tokenizer name or folder (VindLU: bert-base-uncased) to save a processor "
                                            "beside the weights, as training/finetune.py needs")
    parser.add_argument("--max-length", type=int, default=32, help="caption length of the processor (VindLU: 32)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    transformers_logging.set_verbosity_info()

    overrides = {}
    if args.config:
        try:
            overrides = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"--config {args.config}: cannot read a JSON object ({error}).")
        if not isinstance(overrides, dict):
            raise SystemExit(f"--config {args.config} must hold a JSON object of T2V2TConfig fields.")
    if args.fusion_mode:
        overrides["fusion_mode"] = args.fusion_mode
    vision = {name: value for name, value in (("num_frames", args.num_frames), ("image_size", args.image_size))
              if value is not None}
    if vision:
        overrides["vision_config"] = {**overrides.get("vision_config", {}), **vision}

    conversion = convert_vindlu_checkpoint(args.checkpoint, config_overrides=overrides, model_class=args.model_class)
    output_dir = save_converted(conversion, args.output_dir, tokenizer=args.tokenizer, max_length=args.max_length)
    print(conversion.summary())
    print(f"Saved {type(conversion.model).__name__} to {output_dir}")
    return conversion


if __name__ == "__main__":
    main()
