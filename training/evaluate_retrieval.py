"""Evaluate a saved checkpoint on any split of any dataset builder: embedding-only and two-stage (top-k reranked by
the joint encoder) retrieval metrics, both directions, printed as a table and written as JSON.

    python training/evaluate_retrieval.py --model_name_or_path outputs/quickstart/model \\
        --dataset synthetic --dataset_kwargs '{"split": "test", "num_videos": 2000}'
    python training/evaluate_retrieval.py eval_config.json      # the same arguments as one JSON file

Without `--k`, the rerank depth is the `k_test` of the checkpoint's `training_config.json` (else 128).
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.utils import cached_file

import modeling_t2v2t  # noqa: F401  (registers the Auto classes)
from modeling_t2v2t.retrieval.evaluation import evaluate_two_stage
from modeling_t2v2t.retrieval.families import FamilyLabels, format_family_table, format_top1_table
from modeling_t2v2t.retrieval.metrics import V2T_CONVENTIONS, format_metrics_table
from modeling_t2v2t.retrieval.temporal_sensitivity import reversal_sensitivity
from processing.batching import retrieval_loaders
from processing.builders import BUILDERS, build
from training.arguments import ModelArguments, parse_arguments, parse_json_argument
from training.model_factory import load_model_and_processor

logger = logging.getLogger("evaluate")

# The trainer's default k_test (DataArguments.k_test, VindLU's): used when the checkpoint has no training config.
DEFAULT_K = 128
TRAINING_CONFIG_NAME = "training_config.json"

DESCRIPTION = """\
Evaluate a saved checkpoint (T2V2T, X-Pool on towers or on CLIP, CRET, dual encoder) on any split of any dataset
builder with VindLU's two-stage protocol: embedding similarity for every caption-video pair, then each query's top
k candidates rescored by the joint encoder (models without one stop after the embedding stage). Reports R@1/5/10/50,
MdR, MnR in both directions as a table, and as JSON with --output_file.

The rerank depth k defaults to the k_test the checkpoint was trained and reported with (its training_config.json),
else 128; the output says which k was used and where it came from. Arguments come from the command line, from one
JSON file, or from a JSON file followed by overrides.
"""

EXAMPLES = """\
examples:
  python training/evaluate_retrieval.py --model_name_or_path outputs/quickstart/model \\
      --dataset synthetic --dataset_kwargs '{"split": "test", "num_videos": 1000}'
  python training/evaluate_retrieval.py --model_name_or_path CKPT --dataset msrvtt \\
      --dataset_kwargs '{"split": "test_1k_a", "annotation_dir": "...", "video_root": "..."}' --k 128
  python training/evaluate_retrieval.py eval.json --k 0        # a JSON file, embedding-only override
"""


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(metadata={"help": "A saved checkpoint folder (model + processor)."})
    # No default: evaluating on a dataset the user did not name would be a silent fallback.
    dataset: str = field(metadata={"help": f"Dataset builder: one of {sorted(BUILDERS)}."})
    dataset_kwargs: str = field(  # a dict when read from a JSON file
        default='{"split": "test"}', metadata={"help": "Builder arguments, a JSON object (split, paths, ...)."})
    k: int | None = field(default=None, metadata={
        "help": "Candidates reranked per query; 0 = embedding only, -1 = score every pair (exhaustive). Default: the "
                f"k_test of the checkpoint's {TRAINING_CONFIG_NAME}, else {DEFAULT_K}."})
    num_frames: int | None = field(default=None, metadata={"help": "Frames per clip (default: the processor's)."})
    batch_size: int = 16
    pair_batch_size: int = 32
    num_workers: int = 0
    decode_backend: str = "pyav"
    max_words: int | None = field(default=None, metadata={"help": "Cap captions at this many words."})
    token_dtype: str = field(default="float16", metadata={"help": "Storage of cached video tokens: float16/float32."})
    max_memory_gb: float = field(default=1.0, metadata={"help": "Video tokens kept in memory; beyond, on disk."})
    output_file: str | None = field(default=None, metadata={"help": "Where to write the metrics as JSON."})
    v2t_convention: str = field(default="best_caption", metadata={
        "help": "Video->text with several captions per video: best_caption (VindLU: a video's best caption among "
                "all captions) or per_video (CLIP4Clip/X-Pool: each video's best caption score, ranked among "
                "videos)."})
    frame_order_check: bool = field(default=False, metadata={
        "help": "Also measure how much the video embedding and the match score change when each clip is played "
                "backwards (0 = blind to frame order; see modeling_t2v2t/retrieval/temporal_sensitivity.py). "
                "T2V2T models only; encodes every clip twice more."})
    trust_remote_code: bool = False

    def __post_init__(self):
        self.dataset_kwargs = parse_json_argument(self.dataset_kwargs, "dataset_kwargs") or {}
        if self.dataset not in BUILDERS:
            raise ValueError(f"--dataset {self.dataset!r} is not one of {sorted(BUILDERS)}.")
        if self.v2t_convention not in V2T_CONVENTIONS:
            raise ValueError(f"--v2t_convention must be one of {sorted(V2T_CONVENTIONS)}, got {self.v2t_convention!r}.")
        if self.token_dtype not in ("float16", "float32"):
            raise ValueError(f"--token_dtype must be float16 or float32, got {self.token_dtype!r}.")


def rerank_depth(args: EvaluationArguments) -> tuple[int, str]:
    """`(k, where it came from)`: `--k` when given, else the `k_test` of the checkpoint's training config (a local
    folder or a Hub repo), else `DEFAULT_K`."""
    if args.k is not None:
        return args.k, "--k"
    try:
        path = cached_file(args.model_name_or_path, TRAINING_CONFIG_NAME, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except OSError as error:  # e.g. a Hub id that cannot be reached offline
        logger.warning("Could not look for %s of %s (%s).", TRAINING_CONFIG_NAME, args.model_name_or_path, error)
        path = None
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            training_config = json.load(handle)
        k_test = training_config.get("k_test") if isinstance(training_config, dict) else None
        if isinstance(k_test, int) and not isinstance(k_test, bool):
            return k_test, f"k_test of {path}"
    return DEFAULT_K, f"default; no k_test in a {TRAINING_CONFIG_NAME} of {args.model_name_or_path}"


def main(argv=None) -> dict:
    (args,) = parse_arguments((EvaluationArguments,), sys.argv[1:] if argv is None else argv,
                              description=DESCRIPTION, epilog=EXAMPLES)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # 1. Model and processor, from the same folder so frame count and normalisation match the checkpoint; the
    # training scripts' loader picks the model class from the config and checks the processor against the model
    # (the video tower's, or CLIP's image size for X-Pool on CLIP).
    model, processor = load_model_and_processor(
        ModelArguments(model_name_or_path=args.model_name_or_path, trust_remote_code=args.trust_remote_code),
        pretraining=False)
    model.eval()
    if args.frame_order_check and not hasattr(model, "encode_video"):
        raise ValueError(f"--frame_order_check needs a T2V2T model; {args.model_name_or_path} holds a "
                         f"{type(model).__name__}.")
    k_value, k_source = rerank_depth(args)
    has_joint = getattr(model.config, "has_joint_encoder", False)
    if k_value == 0 or not has_joint:
        k_statement = ("k=0: embedding similarity only" if k_value == 0 else
                       f"no reranking: {type(model).__name__} has no joint encoder (embedding similarity only)")
    else:
        k_statement = (f"reranking the top k={k_value} candidates per query" if k_value > 0 else
                       "k=-1: every pair scored by the joint encoder (exhaustive)")
    k_statement += f" ({k_source})"
    logger.info("Rerank depth: %s", k_statement)

    # 2. The evaluation split.
    dataset, skipped = build(args.dataset, **args.dataset_kwargs)
    logger.info("Evaluating on %d videos of %s %s (%d items skipped while building)", len(dataset), args.dataset,
                args.dataset_kwargs, len(skipped))
    captions, videos, text_to_video, num_videos = retrieval_loaders(
        dataset, processor, args.batch_size, args.num_workers, args.num_frames, args.decode_backend, args.max_words)

    # 3. Embedding stage, then the top-k of each query reranked by the joint encoder.
    k = None if k_value == -1 else k_value
    result = evaluate_two_stage(
        model, captions, videos, text_to_video, num_videos, k=k, rerank=None if k_value != 0 else False,
        pair_batch_size=args.pair_batch_size, token_dtype=np.dtype(args.token_dtype),
        max_memory_bytes=int(args.max_memory_gb * 2**30), v2t_convention=args.v2t_convention,
        family_labels=FamilyLabels.from_dataset(dataset))
    frame_order = (reversal_sensitivity(model, captions, videos, text_to_video, num_videos)
                   if args.frame_order_check else None)

    # 4. Report.
    print(f"Rerank depth: {k_statement}")
    print(format_metrics_table(result.metrics))
    print("\n".join(f"{direction}: {label}" for direction, label in result.conventions.items()))
    if result.families:
        print("\nHard-negative families (t2v: % of caption-sibling pairs where the caption's own video scores "
              "higher; text: the same pairs scored by caption embeddings alone, own paraphrases against the "
              "sibling's captions, 50% = the text embedding cannot tell the two videos apart):\n"
              f"{format_family_table(result.families, gains=result.family_gains)}")
    if result.top1:
        print(f"\nWhere each caption's top-ranked video falls (t2v):\n{format_top1_table(result.top1)}")
    if frame_order is not None:
        print(f"\n{frame_order.format()}")
    report = {"model": args.model_name_or_path, "model_class": type(model).__name__, "dataset": args.dataset,
              "dataset_kwargs": args.dataset_kwargs, "num_texts": len(text_to_video), "num_videos": num_videos,
              "k": k_value, "k_source": k_source, "reranked": "reranked" in result.metrics,
              "num_pairs_scored": result.num_pairs_scored, "timings_s": result.timings, "metrics": result.metrics,
              "metric_conventions": result.conventions, "families": result.families,
              "family_gains": result.family_gains, "top1": result.top1,
              "frame_order": None if frame_order is None else frame_order.to_dict(),
              "skipped_while_building": len(skipped)}
    if args.output_file:
        Path(args.output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_file).write_text(json.dumps(report, indent=1))
        logger.info("Wrote %s", args.output_file)
    return report


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
