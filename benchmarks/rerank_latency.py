"""Latency of `VideoRetriever.search` with and without reranking, and of reranking from the stored joint-encoder
caches (`VideoRetriever(joint_cache=True)`, float16 on disk with the index) against reranking by decoding each
candidate again (the default).

Indexes the first `--num-videos` videos of a synthetic benchmark folder (`python -m processing.synthetic --out DIR
--num-videos 300`) once with the joint cache, saves and reloads the index (so the caches are read from disk, memory-
mapped, as a user would), then times `--queries` captions of those videos, one `search` call for all of them:

- `rerank=False` (embedding search only);
- `rerank=True` through decoding (a retriever over the same index without the stored caches; its LRU cache of
  decoded videos is cleared first, as for fresh queries);
- `rerank=True` from the stored caches (nothing decoded).

    python -m benchmarks.rerank_latency --data DIR --model CKPT --num-videos 300 --queries 32 --threads 1

CKPT needs at most one text->video layer (the joint cache's condition); the quickstart checkpoint measured in the
README is the demo's as of commit efcf962 (`git worktree add /tmp/old efcf962`, then
`--model /tmp/old/spaces_demo/checkpoints/t2v2t-synthetic-quickstart`).
"""

import argparse
import json
import os
import tempfile
import time

import torch

from modeling_t2v2t import T2V2TModel, T2V2TProcessor
from modeling_t2v2t.retrieval.retriever import VideoRetriever



def timed(function):
    """(result, (wall seconds, CPU seconds of this process)). CPU time is what to compare on a shared machine:
    wall time there includes waiting for a core."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, (time.perf_counter() - started, time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a processing.synthetic output folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--model", required=True, help="a saved T2V2T model + processor folder with at most one "
                        "text->video layer")
    parser.add_argument("--num-videos", type=int, default=300)
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rerank-k", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with open(os.path.join(args.data, "annotations", f"{args.split}.json")) as file:
        annotations = json.load(file)[: args.num_videos]
    paths = [os.path.join(args.data, item["video"]) for item in annotations]
    step = max(1, len(annotations) // args.queries)
    queries = [annotations[i]["caption"][0] for i in range(0, len(annotations), step)][: args.queries]
    model = T2V2TModel.from_pretrained(args.model).eval()
    processor = T2V2TProcessor.from_pretrained(args.model)
    if not model.supports_joint_cache:
        parser.error(f"{args.model} has num_t2v_layers={model.config.num_t2v_layers}; cached reranking needs at most "
                     "one text->video layer (pass --model with such a model).")

    with tempfile.TemporaryDirectory() as folder:
        indexing = VideoRetriever(model, processor, show_progress=False, joint_cache=True)
        _, index_seconds = timed(lambda: indexing.index_videos(paths, batch_size=8))
        indexing.save(folder)
        cache_bytes = sum(entry.stat().st_size for entry in os.scandir(os.path.join(folder, "joint_cache")))
        from_cache = VideoRetriever.load(folder, model, processor, show_progress=False)
        decoding = VideoRetriever.load(folder, model, processor, show_progress=False)
        decoding._joint_store = None  # the same index, reranked the default way (decode each candidate)

        embedding_only, plain_seconds = timed(lambda: from_cache.search(queries, k=args.k))
        decoding.clear_cache()
        by_decoding, decode_seconds = timed(
            lambda: decoding.search(queries, k=args.k, rerank=True, rerank_k=args.rerank_k))
        by_cache, cache_seconds = timed(
            lambda: from_cache.search(queries, k=args.k, rerank=True, rerank_k=args.rerank_k))

    agree = sum([hit.video_id for hit in a] == [hit.video_id for hit in b] for a, b in zip(by_decoding, by_cache))
    largest = max(abs(x.score - y.score) for a, b in zip(by_decoding, by_cache) for x, y in zip(a, b))
    print(f"## Reranking latency: {len(queries)} queries over {len(paths)} videos, rerank_k={args.rerank_k}, "
          f"k={args.k}, {args.threads} CPU thread(s), model {args.model}\n")
    print(f"Indexing with joint caches: {index_seconds[0]:.1f} s; cache on disk {cache_bytes / 2**20:.0f} MiB "
          f"({cache_bytes / len(paths) / 2**10:.0f} KiB per video, float16).\n")
    print("| search | wall seconds, all queries | CPU seconds, all queries | CPU per query |")
    print("|---|---:|---:|---:|")
    for label, (wall, cpu) in (("embedding only (rerank=False)", plain_seconds),
                               ("rerank, decoding candidates (before)", decode_seconds),
                               ("rerank, stored joint caches (after)", cache_seconds)):
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {1000 * cpu / len(queries):.1f} ms |")
    print(f"\nRerank from caches: {decode_seconds[0] / cache_seconds[0]:.1f}x less wall time, "
          f"{decode_seconds[1] / cache_seconds[1]:.1f}x less CPU time; identical top-{args.k} lists for "
          f"{agree}/{len(queries)} queries, largest score difference {largest:.2e} (float16 storage).")
    assert len(embedding_only) == len(queries)


if __name__ == "__main__":
    main()
