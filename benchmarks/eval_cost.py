"""Cost of two-stage retrieval evaluation at MSR-VTT-1k-A scale (1,000 captions x 1,000 videos, 12 frames) with a
ViT-B/16 + BERT-base sized T2V2T (random weights): embedding stage, reranking top-k per query, and exhaustive joint
scoring of all pairs.

Each stage runs on a measured sample, in its own process (so its peak memory is its own), and is extrapolated to
1k x 1k from the measured per-item time; the table says which numbers are measured and which extrapolated.
Candidate-pair counts come from the actual top-k of a 1k x 1k similarity matrix.

    python -m benchmarks.eval_cost                       # defaults: 1000 x 1000, 12 frames, k in {16, 128}
    python -m benchmarks.eval_cost --fusion_modes t2v2t v2t --video_sample 4 --pair_sample 16

The joint-encoder pair cost is measured for both paths in the same process, interleaved: the straightforward
reference (`score_pairs(use_joint_cache=False)`, every pair re-projects all video tokens) and the exact cached path
(per-video keys/values built once per video, `build_joint_cache`), and the ratio is printed. The extrapolated
rerank rows use the cached path.
"""

import argparse
import multiprocessing
import resource
import time

import torch

from modeling_t2v2t import T2V2TConfig, T2V2TModel
from modeling_t2v2t.retrieval.evaluation import candidate_pairs


def base_config(fusion_mode: str, frames: int) -> T2V2TConfig:
    """BEiT-B/16 at 224 px and BERT-base (VindLU's towers), one text->video layer."""
    return T2V2TConfig(vision_config=dict(num_frames=frames, drop_path_rate=0.0), fusion_mode=fusion_mode,
                       fusion_layer=9, num_t2v_layers=1)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def _stage(args: dict, queue) -> None:
    """One measured stage, in a fresh process: returns seconds per item and this process's peak memory."""
    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    model = T2V2TModel(base_config(args["fusion_mode"], args["frames"])).eval()
    frames, size = args["frames"], model.config.vision_config.image_size
    with torch.no_grad():
        if args["stage"] == "texts":
            ids = torch.randint(1000, 30000, (args["batch"], args["tokens"]))
            run = lambda: model.encode_text(ids, torch.ones_like(ids))  # noqa: E731
        elif args["stage"] == "videos":
            pixels = torch.randn(args["batch"], frames, 3, size, size)
            run = lambda: model.encode_video(pixels)  # noqa: E731
        else:
            queue.put(_pair_stage(model, args))
            return
        run()  # warm-up
        started, items = time.perf_counter(), 0
        for _ in range(args["repeats"]):
            run()
            items += args["batch"]
        seconds = time.perf_counter() - started
    queue.put({"seconds_per_item": seconds / items, "items": items, "peak_rss_gb": _peak_rss_gb()})


def _pair_stage(model, args: dict) -> dict:
    """Seconds per pair of both joint-encoder paths, measured interleaved in this one process (so machine load
    hits both alike): the reference (`use_joint_cache=False`: every pair re-projects all video tokens) and the
    cached path (`batch` captions against one video whose cache is built once), plus the cache build per video."""
    frames, size = args["frames"], model.config.vision_config.image_size
    ids = torch.randint(1000, 30000, (args["batch"], args["tokens"]))
    mask = torch.ones_like(ids)
    mask[:, args["caption_tokens"]:] = 0  # captions shorter than the padded length, as real ones
    text = model.encode_text(ids, mask)
    video = model.encode_video(torch.randn(1, frames, 3, size, size))
    same_video = torch.zeros(args["batch"], dtype=torch.long)
    repeated = video.select(same_video)  # what the evaluator fed the reference path: one row per pair
    runs = {
        "reference": lambda: model.score_pairs(text_encoding=text, video_encoding=repeated, use_joint_cache=False),
        "cache_build": lambda: model.build_joint_cache(video),
    }
    cached = model.build_joint_cache(video)
    runs["cached"] = lambda: model.score_pairs(text_encoding=text, video_encoding=cached, video_index=same_video,
                                               use_joint_cache=True)
    reference = runs["reference"]().scores
    torch.testing.assert_close(runs["cached"]().scores, reference, rtol=1e-4, atol=1e-4)  # also the warm-up
    seconds, cpu_seconds = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, 0.0)
    for _ in range(args["repeats"]):
        for name, run in runs.items():
            started, cpu = time.perf_counter(), time.process_time()
            run()
            seconds[name] += time.perf_counter() - started
            cpu_seconds[name] += time.process_time() - cpu
    pairs = args["batch"] * args["repeats"]
    result = {"items": pairs, "peak_rss_gb": _peak_rss_gb(),
              "reference": seconds["reference"] / pairs, "cached": seconds["cached"] / pairs,
              "cache_build": seconds["cache_build"] / args["repeats"],
              # CPU time of this (single-threaded) process: on a shared machine, wall time includes waiting.
              "reference_cpu": cpu_seconds["reference"] / pairs, "cached_cpu": cpu_seconds["cached"] / pairs}
    if args.get("profile"):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            runs["cached"]()
        result["profile"] = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return result


def measure(stage: str, **args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_stage, args=({"stage": stage, **args}, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def pair_counts(num_texts: int, num_videos: int, ks: list[int]) -> dict[int, tuple[int, int]]:
    """(text->video pairs, pairs of both directions together) for each k, from a random similarity matrix."""
    similarity = torch.randn(num_texts, num_videos, generator=torch.Generator().manual_seed(0))
    counts = {}
    for k in ks:
        t2v, v2t = candidate_pairs(similarity, k)
        counts[k] = (int(t2v.sum()), int((t2v | v2t).sum()))
    return counts


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_texts", type=int, default=1000)
    parser.add_argument("--num_videos", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=32, help="caption length (VindLU's max_txt_l for MSR-VTT)")
    parser.add_argument("--ks", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--fusion_modes", nargs="+", default=["t2v2t", "v2t"])
    parser.add_argument("--video_sample", type=int, default=4, help="videos encoded for the measurement")
    parser.add_argument("--text_sample", type=int, default=64)
    parser.add_argument("--pair_sample", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print a per-op profile of the cached pair path")
    parser.add_argument("--caption_tokens", type=int, default=None,
                        help="real tokens per caption for the pair stage (the rest padding); default --tokens. The "
                             "reference path computes over the padded length, the cached path drops trailing padding")
    parser.add_argument("--pairs_only", action="store_true", help="measure only the joint-encoder pair stage")
    args = parser.parse_args()
    common = dict(frames=args.frames, tokens=args.tokens, threads=args.threads)
    caption_tokens = args.caption_tokens or args.tokens
    counts = pair_counts(args.num_texts, args.num_videos, args.ks)
    all_pairs = args.num_texts * args.num_videos
    tokens_per_video = args.frames * (1 + (224 // 16) ** 2)
    store_gb = args.num_videos * tokens_per_video * 768 * 2 / 2**30

    print(f"## Evaluation cost at {args.num_texts} captions x {args.num_videos} videos, {args.frames} frames, "
          f"ViT-B/16 + BERT-base, {args.threads} CPU threads\n")
    print(f"Video tokens cached for reranking: {tokens_per_video} per video, {store_gb:.1f} GB in float16 for the "
          "gallery (kept on disk beyond the in-memory budget, 1 GB by default).\n")
    results = {}
    for mode in args.fusion_modes:
        pairs = measure("pairs", fusion_mode=mode, batch=8, repeats=max(1, args.pair_sample // 8),
                        profile=args.profile, caption_tokens=caption_tokens, **common)
        results[mode] = pairs
        if args.pairs_only:
            print(f"### fusion_mode={mode}: per pair ({pairs['items']} pairs, {caption_tokens} of {args.tokens} "
                  f"caption tokens real): reference {pairs['reference']:.4f} s, cached {pairs['cached']:.4f} s "
                  f"({pairs['reference'] / pairs['cached']:.1f}x less); CPU time: reference "
                  f"{pairs['reference_cpu']:.4f} s, cached {pairs['cached_cpu']:.4f} s "
                  f"({pairs['reference_cpu'] / pairs['cached_cpu']:.1f}x less); cache build "
                  f"{pairs['cache_build']:.3f} s per video\n")
            if "profile" in pairs:
                print(f"Per-op profile of one cached batch (8 pairs):\n\n```\n{pairs['profile']}\n```\n")
            continue
        texts = measure("texts", fusion_mode=mode, batch=min(32, args.text_sample),
                        repeats=max(1, args.text_sample // 32), **common)
        videos = measure("videos", fusion_mode=mode, batch=2, repeats=max(1, args.video_sample // 2), **common)
        embedding = texts["seconds_per_item"] * args.num_texts + videos["seconds_per_item"] * args.num_videos
        # The cached path pays one cache build per video that has candidates (every video, at these k).
        joint = lambda count: pairs["cached"] * count + pairs["cache_build"] * args.num_videos  # noqa: E731
        exhaustive = embedding + joint(all_pairs)
        print(f"### fusion_mode={mode}\n")
        print(f"Joint encoder per pair, measured interleaved on {pairs['items']} pairs (8 captions x 1 video): "
              f"reference {pairs['reference']:.4f} s, cached {pairs['cached']:.4f} s "
              f"({pairs['reference'] / pairs['cached']:.1f}x less); cache build {pairs['cache_build']:.3f} s per "
              "video. Rows below use the cached path, with one cache build per video.\n")
        for k, (t2v_pairs, both_pairs) in counts.items():
            reference = pairs["reference"] * both_pairs
            cached = pairs["cached"] * both_pairs + pairs["cache_build"] * args.num_videos
            print(f"- rerank top-{k}, both directions ({both_pairs:,} pairs): reference {hours(reference)}, "
                  f"cached {hours(cached)} ({reference / cached:.1f}x less)")
        print()
        if "profile" in pairs:
            print(f"Per-op profile of one cached batch (8 pairs):\n\n```\n{pairs['profile']}\n```\n")
        print("| stage | measured on | seconds per item | time at 1k x 1k (extrapolated) | peak memory (measured) "
              "| share of exhaustive |")
        print("|---|---|---:|---:|---:|---:|")
        print(f"| encode captions | {texts['items']} captions | {texts['seconds_per_item']:.4f} | "
              f"{hours(texts['seconds_per_item'] * args.num_texts)} | {texts['peak_rss_gb']:.2f} GB | |")
        print(f"| encode videos | {videos['items']} videos | {videos['seconds_per_item']:.3f} | "
              f"{hours(videos['seconds_per_item'] * args.num_videos)} | {videos['peak_rss_gb']:.2f} GB | |")
        print(f"| embedding stage total | | | {hours(embedding)} | | {100 * embedding / exhaustive:.1f}% |")
        for k, (t2v_pairs, both_pairs) in counts.items():
            for label, count in ((f"rerank top-{k}, text->video", t2v_pairs),
                                 (f"rerank top-{k}, both directions", both_pairs)):
                total = embedding + joint(count)
                print(f"| {label} ({count:,} pairs) + embedding | {pairs['items']} pairs | "
                      f"{pairs['cached']:.4f} per pair | {hours(total)} | {pairs['peak_rss_gb']:.2f} GB | "
                      f"{100 * total / exhaustive:.1f}% |")
        print(f"| exhaustive joint scoring ({all_pairs:,} pairs) + embedding | {pairs['items']} pairs | "
              f"{pairs['cached']:.4f} per pair | {hours(exhaustive)} | {pairs['peak_rss_gb']:.2f} GB "
              "| 100% |\n")
    if {"t2v2t", "v2t"} <= results.keys():
        t2v2t, v2t = results["t2v2t"], results["v2t"]
        print("### Goals (per pair, cache reused; wall time / CPU time)\n")
        ratios = (("T2V2T reference / T2V2T cached", t2v2t, "reference", t2v2t, "cached", ">= 4x"),
                  ("v2t reference / v2t cached", v2t, "reference", v2t, "cached", ">= 6x"),
                  ("T2V2T cached / v2t cached", t2v2t, "cached", v2t, "cached", "<= 1.5x"))
        for label, top, top_key, bottom, bottom_key, goal in ratios:
            print(f"- {label}: {top[top_key] / bottom[bottom_key]:.2f}x wall, "
                  f"{top[top_key + '_cpu'] / bottom[bottom_key + '_cpu']:.2f}x CPU (goal {goal})")


if __name__ == "__main__":
    main()
