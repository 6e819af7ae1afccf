"""Indexing across processes: `t2v2t index` under `accelerate launch` (and `torchrun`) with 2 CPU processes gives the
same merged index as 1 process; shards merge in process order into an exact or faiss index chosen by size."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import tiny_config, tiny_tokenizer

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from modeling_t2v2t.retrieval.index import EXACT_SEARCH_BELOW
from modeling_t2v2t.retrieval.retriever import VideoRetriever
from modeling_t2v2t.retrieval.sharding import SHARDS_FOLDER, _write_shard, choose_backend, merge_shards, shard_folder

ROOT = Path(__file__).parents[1]
CHECKPOINT = ROOT / "spaces_demo" / "checkpoints" / "t2v2t-synthetic-quickstart"
GALLERY = ROOT / "spaces_demo" / "gallery"
CLI = ["-m", "modeling_t2v2t.retrieval.cli", "index"]
LAUNCHERS = {
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """7 gallery videos and one undecodable file: 8 files, split 4 + 4, the broken one in the second shard."""
    folder = tmp_path_factory.mktemp("videos")
    for path in sorted(GALLERY.glob("*.mp4"))[:7]:
        shutil.copy(path, folder / path.name)
    (folder / "test_00005_broken.mp4").write_bytes(b"\x00" * 100)
    return folder


@pytest.fixture(scope="module")
def single(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "index"
    result = run([sys.executable, *CLI, str(videos), "--model", str(CHECKPOINT), "--out", str(out), "--json",
                  "--batch-size", "3"], cwd=out.parent)
    assert json.loads(result.stdout)["num_processes"] == 1
    return out


def read_index(folder: Path) -> tuple[dict, dict, torch.Tensor]:
    return (json.loads((folder / "retriever.json").read_text()), json.loads((folder / "videos.json").read_text()),
            load_file(folder / "index" / "embeddings.safetensors")["embeddings"])


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_give_the_one_process_index(launcher, videos, single, tmp_path):
    out = tmp_path / "index"
    result = run([*LAUNCHERS[launcher], *CLI, str(videos), "--model", str(CHECKPOINT), "--out", str(out), "--json",
                  "--batch-size", "3", "--keep-shards"], cwd=tmp_path)
    summary = json.loads(result.stdout)  # only the main process prints
    assert summary["num_processes"] == 2 and len(summary["encode_seconds"]) == 2
    assert (summary["num_videos"], summary["num_indexed"], len(summary["skipped"])) == (8, 7, 1)
    for rank in range(2):  # each process wrote its own shard of 4 listed videos
        shard = json.loads((Path(shard_folder(out, rank, 2)) / "shard.json").read_text())
        assert shard["num_listed"] == 4 and len(shard["video_ids"]) == 4 - rank

    config_1, videos_1, embeddings_1 = read_index(single)
    config_2, videos_2, embeddings_2 = read_index(out)
    assert videos_2 == videos_1  # same ids and paths in the same rows
    assert embeddings_2.shape == embeddings_1.shape == (7, 128)
    torch.testing.assert_close(embeddings_2, embeddings_1, rtol=0, atol=1e-6)
    assert config_2["skipped"] == config_1["skipped"] and config_2["index_backend"] == config_1["index_backend"]
    assert config_2["model"] == config_1["model"] and config_2["num_videos"] == 7

    model = T2V2TModel.from_pretrained(CHECKPOINT).eval()
    processor = T2V2TProcessor.from_pretrained(CHECKPOINT)
    queries = ["a small blue square shrinks", "a red circle moves left"]
    hits_1 = VideoRetriever.load(single, model, processor).search(queries, k=7)
    hits_2 = VideoRetriever.load(out, model, processor).search(queries, k=7)
    assert [[hit.video_id for hit in hits] for hits in hits_2] == [[hit.video_id for hit in hits] for hits in hits_1]


# ----- merging, in process --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_config()
    processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config),
                               tiny_tokenizer(tmp_path_factory.mktemp("tok")), max_length=12)
    return T2V2TModel(config).eval(), processor


def write_shards(out: Path, model, processor, embeddings: torch.Tensor, sizes: list[int]) -> list[str]:
    ids, start = [], 0
    for rank, size in enumerate(sizes):
        retriever = VideoRetriever(model, processor, show_progress=False)
        rows = [f"video{row:05d}" for row in range(start, start + size)]
        if size:
            retriever.add_embeddings(embeddings[start:start + size], rows, [f"/videos/{row}.mp4" for row in rows])
        _write_shard(shard_folder(out, rank, len(sizes)), retriever, rank, len(sizes), size, 0.0)
        ids += rows
        start += size
    return ids


def test_backend_is_chosen_by_size():
    assert choose_backend("auto", EXACT_SEARCH_BELOW - 1) == "exact"
    pytest.importorskip("faiss")
    assert choose_backend("auto", EXACT_SEARCH_BELOW) == "faiss"
    assert choose_backend("faiss", 3) == "faiss" and choose_backend("exact", 10**7) == "exact"
    with pytest.raises(ValueError, match="backend='annoy' is unknown"):
        choose_backend("annoy", 3)


def test_merge_keeps_process_order_and_an_empty_shard(tiny, tmp_path):
    model, processor = tiny
    embeddings = torch.randn(5, 16)
    ids = write_shards(tmp_path, model, processor, embeddings, [3, 2, 0])  # 3 processes, the last with no video
    merged = merge_shards(tmp_path, model, processor, 3)
    assert merged.video_ids == ids and merged.index.backend == "exact"
    torch.testing.assert_close(merged.index.embeddings, embeddings, rtol=0, atol=0)
    assert not (tmp_path / SHARDS_FOLDER).exists()  # deleted after the merge
    assert VideoRetriever.load(tmp_path, model, processor).video_ids == ids


def test_merge_builds_faiss_for_a_large_collection(tiny, tmp_path):
    pytest.importorskip("faiss")
    model, processor = tiny
    torch.manual_seed(1)
    embeddings = torch.nn.functional.normalize(torch.randn(EXACT_SEARCH_BELOW + 10, 16), dim=-1)
    half = len(embeddings) // 2
    ids = write_shards(tmp_path, model, processor, embeddings, [half, len(embeddings) - half])
    merged = merge_shards(tmp_path, model, processor, 2)
    assert merged.index.backend == "faiss" and merged.index.is_built and len(merged) == len(embeddings)
    loaded = VideoRetriever.load(tmp_path, model, processor)
    assert loaded.index.backend == "faiss" and loaded.video_ids == ids
    _, rows = loaded.index.search(embeddings[[0, half, len(embeddings) - 1]], k=1)
    assert rows[:, 0].tolist() == [0, half, len(embeddings) - 1]  # rows keep process order across shards


def test_a_missing_shard_is_named(tiny, tmp_path):
    model, processor = tiny
    write_shards(tmp_path, model, processor, torch.randn(4, 16), [2, 2])
    shutil.rmtree(shard_folder(tmp_path, 1, 2))
    with pytest.raises(FileNotFoundError, match="shard of process 1 is missing .* filesystem every machine sees"):
        merge_shards(tmp_path, model, processor, 2)
