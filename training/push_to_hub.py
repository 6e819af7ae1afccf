"""Publish a trained T2V2T, X-Pool or CRET model on the Hugging Face Hub: build a Hub-ready folder (weights, config
with auto_map, processor, custom code, a model card with the real evaluation numbers and model-index metadata,
training config, LICENSE, CITATION.cff) from a trained model folder, then create the repository and upload it.

    python training/push_to_hub.py outputs/msrvtt_finetune --repo-id me/t2v2t-msrvtt \\
        --training-config training/configs/msrvtt_finetune.json --private
    python training/push_to_hub.py outputs/quickstart/model --dry-run      # build only, upload nothing

The model folder is what `training/finetune.py` writes (or any folder saved with `save_pretrained`); its
`test_results.json` / `all_results.json` fill the card's evaluation table. Without --repo-id (only with --dry-run)
the card says it was rendered for a local folder instead of naming a made-up repository. Authentication: --token, the
HF_TOKEN environment variable or `hf auth login`.
"""

import argparse
import logging
import sys
from pathlib import Path

from transformers.utils import logging as transformers_logging

from modeling_t2v2t.hub.publishing import build_hub_folder, push_folder_to_hub

logger = logging.getLogger("push_to_hub")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="trained model folder (e.g. the output_dir of training/finetune.py)")
    parser.add_argument("--repo-id", help="Hub repository, org/name (required unless --dry-run)")
    parser.add_argument("--output-dir", help="where to build the Hub folder (default: MODEL_DIR-hub)")
    parser.add_argument("--training-config", help="JSON config the model was trained with "
                                                  "(default: MODEL_DIR/training_config.json if present)")
    parser.add_argument("--results", help="evaluation results JSON (default: MODEL_DIR/test_results.json, then "
                                          "all_results.json); a training/evaluate_retrieval.py --output_file report works too")
    parser.add_argument("--results-prefix", default="test", help="metric prefix of the reported split (default: test)")
    parser.add_argument("--dataset", action="append", dest="datasets", help="Hub dataset id for the card metadata "
                                                                            "(repeatable)")
    parser.add_argument("--template", help="model card template (Jinja; default: the package's template for the "
                                           "model's model_type)")
    parser.add_argument("--license-file", help="license text to publish (default: the installed package's LICENSE)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output-dir")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--commit-message", default="Upload model")
    parser.add_argument("--dry-run", action="store_true", help="build the folder and stop; upload nothing")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.repo_id:
        parser.error("--repo-id is required unless --dry-run is given")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    transformers_logging.set_verbosity_info()
    model_dir = Path(args.model_dir)
    output_dir = Path(args.output_dir) if args.output_dir else model_dir.with_name(model_dir.name + "-hub")

    folder = build_hub_folder(
        model_dir, output_dir, repo_id=args.repo_id, training_config=args.training_config, results_file=args.results,
        results_prefix=args.results_prefix, datasets=args.datasets, template=args.template,
        license_file=args.license_file, overwrite=args.overwrite)
    print(f"Hub folder: {folder}")
    for path in sorted(folder.iterdir()):
        print(f"  {path.name:<36} {path.stat().st_size:>12,d} bytes")
    if args.dry_run:
        if args.repo_id is None:
            print("No --repo-id: the model card names no Hub repository and says so; pass --repo-id ORG/NAME "
                  "to render it for the repository you will upload to.")
        print("Dry run: nothing uploaded.")
        return folder, None
    commit = push_folder_to_hub(folder, args.repo_id, token=args.token, private=args.private,
                                commit_message=args.commit_message)
    print(f"Uploaded to https://huggingface.co/{args.repo_id} ({getattr(commit, 'commit_url', commit)})")
    return folder, commit


if __name__ == "__main__":
    main()
