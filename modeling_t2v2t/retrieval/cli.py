"""The `t2v2t` command: index a folder (or dataset) of videos, search it by text, describe a saved index.

    t2v2t index VIDEO_DIR_OR_DATASET --model PATH_OR_HUB_ID --out INDEX_DIR
    t2v2t search INDEX_DIR "a dog catches a frisbee" [-k 10] [--rerank] [--json]
    t2v2t info INDEX_DIR [--json]

`python -m modeling_t2v2t.retrieval.cli` is the same command. `index` splits the videos across the processes of a
launcher, unchanged: `torchrun --nproc_per_node N -m modeling_t2v2t.retrieval.cli index ...` or `accelerate launch
--multi_gpu --num_processes N ... -m modeling_t2v2t.retrieval.cli index ...` (see `sharding.py`).
"""

import argparse
import json
import logging as std_logging
import os
import sys

from transformers.utils import logging

from .retriever import RETRIEVER_CONFIG_NAME
from .video_files import VIDEO_EXTENSIONS, find_videos

logger = logging.get_logger(__name__)

DATASET_FILE_TYPES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}
_EXAMPLES = """\
examples:
  t2v2t index spaces_demo/gallery --model spaces_demo/checkpoints/t2v2t-synthetic-quickstart --out my_index
  t2v2t search my_index "a small blue square shrinks" -k 5 --rerank
  t2v2t info my_index
  torchrun --standalone --nproc_per_node 2 -m modeling_t2v2t.retrieval.cli index VIDEOS --model M --out my_index
"""


# ----- inputs ---------------------------------------------------------------------------------------------------
def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "state.json")) and os.path.isfile(
        os.path.join(path, "dataset_info.json"))


def collect_videos(source: str, extensions=VIDEO_EXTENSIONS, video_root: str | None = None):
    """
    `(paths, video_ids)` to index from `source`:

    - a folder of videos: every file with a video extension under it (recursively, sorted); ids are the paths
      relative to the folder;
    - a dataset saved with `Dataset.save_to_disk`, or a `.json`/`.jsonl`/`.csv`/`.parquet` file that `datasets` loads
      (e.g. a VindLU annotation file), with a "video" column of paths (relative ones are taken from `video_root`,
      default the file's folder) and optionally a "video_id" column (else the path is the id). Rows naming a video
      already listed (one row per caption) are counted and left out.

    Raises `FileNotFoundError` for a missing source and `ValueError` when it yields no videos.
    """
    source = os.fspath(source)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source} does not exist: give a folder of videos or a dataset.")
    if os.path.isdir(source) and not _is_saved_dataset(source):
        paths = find_videos(source, extensions).paths
        if not paths:
            raise ValueError(f"No video files found in {source} (searched recursively for {', '.join(extensions)}).")
        return [os.path.abspath(path) for path in paths], [os.path.relpath(path, source) for path in paths]

    import datasets

    if os.path.isdir(source):
        dataset = datasets.load_from_disk(source)
        base = video_root or source
    else:
        file_type = DATASET_FILE_TYPES.get(os.path.splitext(source)[1].lower())
        if file_type is None:
            raise ValueError(f"{source} is neither a folder nor a dataset file ({', '.join(DATASET_FILE_TYPES)}).")
        dataset = datasets.load_dataset(file_type, data_files=source, split="train")
        base = video_root or os.path.dirname(os.path.abspath(source))
    if isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"{source} holds several splits ({list(dataset)}); save or pass one split.")
    if "video" not in dataset.column_names:
        raise ValueError(f"{source} needs a 'video' column of file paths; its columns are {dataset.column_names}.")
    if type(dataset.features["video"]).__name__ == "Video":  # read the paths, not decoded frames
        dataset = dataset.cast_column("video", type(dataset.features["video"])(decode=False))
    items = [item.get("path") if isinstance(item, dict) else item for item in dataset["video"]]
    ids = list(dataset["video_id"]) if "video_id" in dataset.column_names else None
    paths, video_ids, seen, repeats = [], [], set(), 0
    for row, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise ValueError(f"{source}: row {row} has no video path (video={item!r}).")
        path = item if os.path.isabs(item) else os.path.abspath(os.path.join(base, item))
        if path in seen:
            repeats += 1
            continue
        seen.add(path)
        paths.append(path)
        video_ids.append(str(ids[row]) if ids is not None else item)
    if repeats:
        logger.info("%s: %d rows name a video already listed (several captions per video); indexing %d videos.",
                    source, repeats, len(paths))
    if not paths:
        raise ValueError(f"{source} lists no videos.")
    return paths, video_ids


def load_model_and_processor(name_or_path: str, device=None, dtype: str = "float32", trust_remote_code: bool = False):
    """`AutoModel`/`AutoProcessor` of a checkpoint folder (recorded as an absolute path) or Hub id, in eval mode."""
    import torch
    from transformers import AutoModel, AutoProcessor

    if os.path.isdir(name_or_path):
        name_or_path = os.path.abspath(name_or_path)  # the index records it; search may run from another folder
    model = AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code,
                                      dtype=getattr(torch, dtype)).eval()
    if device is not None:
        model = model.to(device)
    processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    return model, processor


# ----- commands ---------------------------------------------------------------------------------------------------
def run_index(args) -> dict:
    import torch
    from accelerate import PartialState

    from .sharding import index_collection

    paths, video_ids = collect_videos(args.source, args.extensions, args.video_root)  # bad input: fail before launch
    state = PartialState(cpu=args.cpu or not torch.cuda.is_available())
    try:
        if state.is_main_process:
            logger.info("Indexing %d videos from %s with %d process(es).", len(paths), args.source,
                        state.num_processes)
        model, processor = load_model_and_processor(args.model, state.device, args.dtype, args.trust_remote_code)
        summary = index_collection(
            model, processor, paths, video_ids, args.out, backend=args.backend, batch_size=args.batch_size,
            num_workers=args.num_workers, keep_shards=args.keep_shards, state=state,
            show_progress=not args.no_progress)
        if state.is_main_process:
            result = {"index": os.path.abspath(args.out), **summary.to_dict()}
            if args.json:
                print(json.dumps(result, indent=1))
            else:
                print(f"Indexed {summary.num_indexed} of {summary.num_videos} videos into {args.out} "
                      f"({summary.backend} index, {summary.num_processes} process(es), {summary.seconds:.1f} s, "
                      f"{summary.videos_per_second:.1f} videos/s); {len(summary.skipped)} skipped.")
                for path, reason in summary.skipped:
                    print(f"  skipped {path}: {reason}")
    except BaseException:
        state.destroy_process_group()  # no barrier: the other processes may never reach it; the launcher ends them
        raise
    # A clean exit under accelerate launch / torchrun (exits without the barrier crashed one time in four).
    state.wait_for_everyone()
    state.destroy_process_group()
    return summary.to_dict()


def _read_index_config(index_dir: str) -> dict:
    path = os.path.join(index_dir, RETRIEVER_CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{index_dir} is not a t2v2t index: {RETRIEVER_CONFIG_NAME} is missing (build one "
                                "with `t2v2t index`).")
    with open(path) as file:
        return json.load(file)


def _folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, files in os.walk(folder) for name in files)


def _human_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def run_info(args) -> dict:
    config = _read_index_config(args.index)
    model = config["model"]
    info = {"index": os.path.abspath(args.index), "model": model.get("name_or_path"), "model_class": model.get("class"),
            "model_type": model.get("model_type"), "config_hash": model.get("config_hash"),
            "num_videos": config["num_videos"], "num_skipped": len(config.get("skipped", [])),
            "embed_dim": config["embed_dim"], "backend": config["index_backend"], "num_frames": config["num_frames"],
            "size_bytes": _folder_bytes(args.index)}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        rows = [("index", info["index"]),
                ("model", f"{info['model']} ({info['model_class']}, model_type={info['model_type']}, "
                          f"config {info['config_hash']})"),
                ("videos", f"{info['num_videos']} ({info['num_skipped']} skipped while indexing)"),
                ("embeddings", f"{info['embed_dim']}-d, {info['backend']} search"),
                ("frames", f"{info['num_frames']} per video"),
                ("size", f"{_human_bytes(info['size_bytes'])} on disk")]
        print("\n".join(f"{name:<11}{value}" for name, value in rows))
    return info


def _format_table(query: str, hits, reranked: bool) -> str:
    header = ["rank", "score"] + (["embedding"] if reranked else []) + ["video", "path"]
    rows = [[str(rank), f"{hit['score']:.4f}"] + ([f"{hit['embedding_score']:.4f}"] if reranked else [])
            + [hit["video_id"], hit["path"] or ""] for rank, hit in enumerate(hits, 1)]
    widths = [max(len(row[column]) for row in [header] + rows) for column in range(len(header))]
    lines = [f"query: {query}" + ("  (reranked by the joint encoder)" if reranked else "")]
    for row in [header] + rows:
        lines.append("  ".join(cell.rjust(width) if column < len(header) - 2 else cell.ljust(width)
                               for column, (cell, width) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)


def run_search(args) -> list:
    import torch

    from .retriever import VideoRetriever

    config = _read_index_config(args.index)
    model_path = args.model or config["model"].get("name_or_path")
    if not model_path:
        raise ValueError(f"{args.index} does not record its model: pass --model PATH_OR_HUB_ID.")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, processor = load_model_and_processor(model_path, device, args.dtype, args.trust_remote_code)
    retriever = VideoRetriever.load(args.index, model, processor, show_progress=not args.no_progress)
    with torch.no_grad():
        results = retriever.search(args.queries, k=args.k, rerank=args.rerank, rerank_k=args.rerank_k)
    output = [{"query": query, "hits": [{"rank": rank, "video_id": hit.video_id, "path": hit.path,
                                         "score": hit.score, "embedding_score": hit.embedding_score}
                                        for rank, hit in enumerate(hits, 1)]}
              for query, hits in zip(args.queries, results)]
    if args.json:
        print(json.dumps(output if len(output) > 1 else output[0], indent=1))
    else:
        print("\n\n".join(_format_table(item["query"], item["hits"], args.rerank) for item in output))
    return output


# ----- parser -----------------------------------------------------------------------------------------------------
def _add_model_options(parser, required: bool) -> None:
    parser.add_argument("--model", required=required,
                        help="checkpoint folder or Hub id (model + processor)"
                             + ("" if required else "; default: the one the index was built with"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="model weights' dtype (default: %(default)s)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the checkpoint's own code (for models this package does not define)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t2v2t", description="Index your videos with a t2v2t retrieval model and search them by text.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at INFO level, and show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{index,search,info}")

    index = commands.add_parser(
        "index", help="encode every video of a folder or dataset into a search index",
        description="Encode the videos of a folder (recursively, by extension) or of a dataset into a search index "
                    "(exact below 4096 videos, else faiss). Under `accelerate launch` or `torchrun` the videos are "
                    "split across the processes, each writes an embedding shard, and the main process merges them.")
    index.add_argument("source", metavar="VIDEO_DIR_OR_DATASET",
                       help="a folder of videos, a folder saved with Dataset.save_to_disk, or a "
                            ".json/.jsonl/.csv/.parquet file with a 'video' column (and optionally 'video_id')")
    index.add_argument("--out", required=True, metavar="INDEX_DIR", help="where to save the index")
    _add_model_options(index, required=True)
    index.add_argument("--backend", default="auto", choices=("auto", "exact", "faiss"),
                       help="search index: auto = exact below 4096 videos, faiss from there (default: %(default)s)")
    index.add_argument("--extensions", nargs="+", default=list(VIDEO_EXTENSIONS), metavar="EXT",
                       help="video file extensions to look for in a folder (default: common containers)")
    index.add_argument("--video-root", help="folder that a dataset's relative video paths start from (default: the "
                                            "dataset file's folder)")
    index.add_argument("--batch-size", type=int, default=8, help="videos encoded together (default: %(default)s)")
    index.add_argument("--num-workers", type=int, default=0,
                       help="threads decoding the next batch meanwhile (default: %(default)s)")
    index.add_argument("--cpu", action="store_true", help="encode on CPU even when a GPU is present")
    index.add_argument("--keep-shards", action="store_true", help="keep the per-process embedding shards")
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.set_defaults(handler=run_index)

    search = commands.add_parser("search", help="find the videos of an index that best match a text",
                                 description="Search an index by text: embedding similarity, optionally reranked by "
                                             "the model's joint encoder (--rerank).")
    search.add_argument("index", metavar="INDEX_DIR")
    search.add_argument("queries", nargs="+", metavar="QUERY", help="one or more text queries")
    search.add_argument("-k", type=int, default=10, help="results per query (default: %(default)s)")
    search.add_argument("--rerank", action="store_true",
                        help="rescore the top --rerank-k candidates with the joint encoder (decodes them again)")
    search.add_argument("--rerank-k", type=int, help="candidates to rerank (default: max(k, 32))")
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    _add_model_options(search, required=False)
    search.set_defaults(handler=run_search)

    info = commands.add_parser("info", help="describe a saved index: model, number of videos, size",
                               description="Describe a saved index without loading its model.")
    info.add_argument("index", metavar="INDEX_DIR")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=run_info)
    return parser


def main(argv=None) -> int:
    """Entry point of the `t2v2t` console script. Returns the exit status: 0, or 2 for bad input (reported as one
    line naming the problem)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    std_logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.set_verbosity(logging.INFO if args.verbose else logging.WARNING)
    if getattr(args, "no_progress", False):
        logging.disable_progress_bar()  # transformers' own bars (loading weights)
    try:
        args.handler(args)
    except (FileNotFoundError, NotADirectoryError, ValueError, ImportError) as err:
        if args.verbose:
            raise
        print(f"t2v2t {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
