"""Indexing one video collection with several processes, on one machine or many, with the launchers people already
use (`accelerate launch`, `torchrun`, SLURM through either): no process group of our own.

`index_collection` takes the whole (sorted) video list in every process; `accelerate`'s `PartialState` says which
process this is, and `split_between_processes` gives it one contiguous slice. Each process encodes its slice with a
`VideoRetriever` and writes an *embedding shard* (`OUT/shards/shard-RRRRR-of-NNNNN/`: `embeddings.safetensors` and
`shard.json` with the ids, paths and skipped videos). After a barrier the main process reads the shards in process
order, so row `i` of the merged index is the `i`-th video of the list whatever the number of processes, and saves one
`VideoRetriever` folder (exact search, or faiss from `EXACT_SEARCH_BELOW` videos on). With several machines, `OUT`
must be on a filesystem they all see (the main process reads every shard).
"""

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

import torch
from safetensors.torch import load_file, save_file
from transformers.utils import logging

from .index import EXACT_SEARCH_BELOW
from .retriever import SkippedVideo, VideoRetriever

logger = logging.get_logger(__name__)

SHARDS_FOLDER = "shards"
SHARD_EMBEDDINGS_NAME = "embeddings.safetensors"
SHARD_CONFIG_NAME = "shard.json"
INDEX_BACKENDS = ("auto", "exact", "faiss")


@dataclass
class IndexingSummary:
    """
    What `index_collection` did, the same in every process.

    `num_videos`: videos listed; `num_indexed`: in the saved index; `skipped`: `[path, reason]` of each video that
    could not be decoded; `backend`: the saved index's backend; `num_processes`; `seconds`: wall time of the whole
    call (model already loaded); `encode_seconds`: per process, decoding and encoding its slice.
    """

    num_videos: int
    num_indexed: int
    skipped: list = field(default_factory=list)
    backend: str = "exact"
    num_processes: int = 1
    seconds: float = 0.0
    encode_seconds: list = field(default_factory=list)

    @property
    def videos_per_second(self) -> float:
        return self.num_videos / self.seconds if self.seconds else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "videos_per_second": self.videos_per_second}


def shard_folder(out_dir, process_index: int, num_processes: int) -> str:
    return os.path.join(os.fspath(out_dir), SHARDS_FOLDER, f"shard-{process_index:05d}-of-{num_processes:05d}")


def choose_backend(backend: str, num_videos: int) -> str:
    """`"auto"`: exact search below `EXACT_SEARCH_BELOW` videos (a scan costs well under a millisecond per query
    there, and an ANN index only loses recall), faiss from there on. faiss missing for a large collection is an
    error, not a silent exact index."""
    if backend not in INDEX_BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; choose one of {INDEX_BACKENDS}.")
    if backend != "auto":
        return backend
    if num_videos < EXACT_SEARCH_BELOW:
        return "exact"
    try:
        import faiss  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{num_videos} videos call for a faiss index (from {EXACT_SEARCH_BELOW} on): "
                          "`pip install faiss-cpu`, or ask for backend='exact'.") from err
    return "faiss"


def _write_shard(folder: str, retriever: VideoRetriever, process_index: int, num_processes: int, num_listed: int,
                 encode_seconds: float) -> None:
    os.makedirs(folder, exist_ok=True)
    if len(retriever):
        embeddings = retriever.index.embeddings
    else:  # more processes than videos, or every video of this slice skipped
        embeddings = torch.empty(0, retriever.model_embed_dim())
    save_file({"embeddings": embeddings.contiguous()}, os.path.join(folder, SHARD_EMBEDDINGS_NAME))
    with open(os.path.join(folder, SHARD_CONFIG_NAME), "w") as file:
        json.dump({"process_index": process_index, "num_processes": num_processes, "num_listed": num_listed,
                   "video_ids": retriever.video_ids, "paths": retriever.paths,
                   "skipped": [list(item) for item in retriever.skipped], "encode_seconds": encode_seconds}, file)


def _read_shards(out_dir, num_processes: int) -> list[tuple[torch.Tensor, dict]]:
    shards = []
    for process_index in range(num_processes):
        folder = shard_folder(out_dir, process_index, num_processes)
        config_path = os.path.join(folder, SHARD_CONFIG_NAME)
        if not os.path.isfile(config_path):
            raise FileNotFoundError(
                f"Embedding shard of process {process_index} is missing ({config_path}). With several machines the "
                "output folder must be on a filesystem every machine sees.")
        with open(config_path) as file:
            config = json.load(file)
        embeddings = load_file(os.path.join(folder, SHARD_EMBEDDINGS_NAME))["embeddings"]
        if len(embeddings) != len(config["video_ids"]):
            raise ValueError(f"{folder} is inconsistent: {len(embeddings)} embeddings, {len(config['video_ids'])} ids.")
        shards.append((embeddings, config))
    return shards


def _merge(shards, out_dir, model, processor, backend: str, index_params) -> VideoRetriever:
    num_indexed = sum(len(embeddings) for embeddings, _ in shards)
    chosen = choose_backend(backend, num_indexed)
    retriever = VideoRetriever(model, processor, index_backend=chosen, index_params=index_params,
                               show_progress=False)
    for embeddings, config in shards:
        if len(embeddings):
            retriever.add_embeddings(embeddings, config["video_ids"], config["paths"])
        retriever.skipped.extend(SkippedVideo(*item) for item in config["skipped"])
    if chosen == "faiss":
        retriever.index.build()  # train and fill it now, so the first search does not pay for it
    retriever.save(out_dir)
    logger.info("Merged %d embedding shards into a %s index of %d videos in %s.", len(shards), chosen,
                len(retriever), out_dir)
    return retriever


def merge_shards(out_dir, model, processor, num_processes: int, backend: str = "auto", index_params=None,
                 keep_shards: bool = False) -> VideoRetriever:
    """Read the `num_processes` embedding shards under `out_dir/shards` in process order, save one
    `VideoRetriever` folder in `out_dir` and return it (the shards are deleted unless `keep_shards`)."""
    retriever = _merge(_read_shards(out_dir, num_processes), out_dir, model, processor, backend, index_params)
    if not keep_shards:
        shutil.rmtree(os.path.join(os.fspath(out_dir), SHARDS_FOLDER))
    return retriever


def index_collection(model, processor, paths, video_ids, out_dir, backend: str = "auto", index_params=None,
                     batch_size: int = 8, num_workers: int = 0, keep_shards: bool = False, state=None,
                     show_progress: bool = True) -> IndexingSummary:
    """
    Index `paths` (with their unique `video_ids`) into a `VideoRetriever` folder `out_dir`, split across the
    processes of the current launch (`accelerate launch`, `torchrun`, or a single plain process).

    Every process must call this with the same lists and the model on its own device (`state.device`). `state`: an
    `accelerate.PartialState` (default: a new one). Returns the same `IndexingSummary` in every process.
    """
    from accelerate import PartialState

    start = time.perf_counter()
    state = state or PartialState()
    paths, video_ids = [os.fspath(path) for path in paths], [str(video_id) for video_id in video_ids]
    if len(paths) != len(video_ids):
        raise ValueError(f"Got {len(paths)} paths but {len(video_ids)} video_ids.")
    if not paths:
        raise ValueError("index_collection() got no videos to index.")
    chosen = choose_backend(backend, len(paths))  # fail early (before encoding) if faiss is needed and missing
    rank, world = state.process_index, state.num_processes
    if state.is_main_process and os.path.isdir(os.path.join(os.fspath(out_dir), SHARDS_FOLDER)):
        shutil.rmtree(os.path.join(os.fspath(out_dir), SHARDS_FOLDER))  # shards of an earlier, other run
    state.wait_for_everyone()

    with state.split_between_processes({"paths": paths, "video_ids": video_ids}) as mine:
        encode_start = time.perf_counter()
        retriever = VideoRetriever(model, processor, index_backend="exact",
                                   show_progress=show_progress and state.is_local_main_process)
        if mine["paths"]:
            retriever.index_videos(mine["paths"], video_ids=mine["video_ids"], batch_size=batch_size,
                                   num_workers=num_workers)
        encode_seconds = time.perf_counter() - encode_start
        logger.info("Process %d of %d encoded %d of its %d videos in %.1f s.", rank, world, len(retriever),
                    len(mine["paths"]), encode_seconds)
        _write_shard(shard_folder(out_dir, rank, world), retriever, rank, world, len(mine["paths"]), encode_seconds)
    state.wait_for_everyone()

    if state.is_main_process:
        shards = _read_shards(out_dir, world)
        merged = _merge(shards, out_dir, model, processor, chosen, index_params)
        timings = [config["encode_seconds"] for _, config in shards]
        if not keep_shards:
            shutil.rmtree(os.path.join(os.fspath(out_dir), SHARDS_FOLDER))
        summary = IndexingSummary(num_videos=len(paths), num_indexed=len(merged),
                                  skipped=[list(item) for item in merged.skipped], backend=merged.index.backend,
                                  num_processes=world, encode_seconds=timings)
    else:
        summary = None
    summary = _broadcast(state, summary)
    summary.seconds = time.perf_counter() - start
    return summary


def _broadcast(state, value):
    """The main process's `value` in every process."""
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


__all__ = ["IndexingSummary", "choose_backend", "index_collection", "merge_shards", "shard_folder"]
