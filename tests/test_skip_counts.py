"""Broken media in a dataset (issue 13, point 2): every kind of unreadable file raises the one contract error,
`VideoDecodeError` naming the file, at every entry point; with `skip_bad=True` training and indexing skip those
files and report how many, summed over DataLoader workers; without it the first bad file stops the run."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from broken_media import BROKEN_KINDS, write_broken, write_small_video
from tiny_models import TINY_MODEL, tiny_config, tiny_tokenizer

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from modeling_t2v2t.retrieval.retriever import VideoRetriever
from modeling_t2v2t.video_processing_t2v2t import load_video_file
from processing.decoding import VideoDecodeError, decode_clip, probe_video
from training import finetune

NUM_GOOD = 24  # + one file of each of the 6 broken kinds: 20% of the dataset is broken
WORDS = ["red", "green", "blue", "square", "circle", "moves", "left", "right", "up", "down", "a", "spins"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """A media root with NUM_GOOD good clips and one broken file of each kind, and a VindLU annotation file."""
    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    entries, good, broken = [], [], {}
    for index in range(NUM_GOOD):
        path = write_small_video(root / f"good{index:02d}.mp4", num_frames=6 + index % 4)
        good.append(str(path))
        entries.append({"video": path.name, "caption": " ".join(rng.choice(WORDS, size=5))})
    for kind in BROKEN_KINDS:
        path = write_broken(kind, root, f"broken_{kind}")
        broken[kind] = str(path)
        entries.append({"video": path.name, "caption": " ".join(rng.choice(WORDS, size=5))})
    annotation = root / "train.json"
    annotation.write_text(json.dumps(entries))
    return {"root": str(root), "annotation": str(annotation), "good": good, "broken": broken}


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_every_entry_point_raises_the_contract_error_naming_the_file(media, kind):
    path = media["broken"][kind]
    processor = T2V2TVideoProcessor(num_frames=4, size={"height": 16, "width": 16})
    calls = {
        "probe_video": lambda: probe_video(path),
        "decode_clip": lambda: decode_clip(path, 4),
        "load_video_file": lambda: load_video_file(path),
        "processor": lambda: processor(videos=[path]),
    }
    for name, call in calls.items():
        with pytest.raises(VideoDecodeError) as caught:
            call()
        assert caught.value.path == path and str(caught.value).startswith(f"{path}: "), name


def _retriever(tmp_path):
    torch.manual_seed(0)
    model = T2V2TModel(tiny_config()).eval()
    processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(model.config), tiny_tokenizer(tmp_path),
                               max_length=12)
    return VideoRetriever(model, processor, show_progress=False)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_index_videos_skips_and_counts_every_broken_file(media, tmp_path, caplog, num_workers):
    retriever = _retriever(tmp_path)
    paths = media["good"] + list(media["broken"].values())
    with caplog.at_level(logging.WARNING):
        added = retriever.index_videos(paths, batch_size=5, num_workers=num_workers)
    assert added == len(retriever) == NUM_GOOD
    assert sorted(item.path for item in retriever.skipped) == sorted(media["broken"].values())
    assert all("VideoDecodeError" in item.reason for item in retriever.skipped)
    assert f"Indexed {NUM_GOOD} of {len(paths)} videos; {len(BROKEN_KINDS)} could not be decoded" in caplog.text


def test_index_videos_without_skip_bad_raises_on_the_first_bad_file(media, tmp_path):
    retriever = _retriever(tmp_path)
    first_bad = media["broken"]["no_codec"]
    with pytest.raises(VideoDecodeError) as caught:
        retriever.index_videos(media["good"][:3] + [first_bad] + media["good"][3:6], batch_size=2, skip_bad=False)
    assert caught.value.path == first_bad


def _config(tmp_path: Path, media: dict, **overrides) -> str:
    config = {
        "model_config": TINY_MODEL, "num_frames": 2, "max_length": 16,
        "train_data": [{"builder": "vindlu_json", "annotation_file": media["annotation"],
                        "video_root": media["root"], "split": "train"}],
        "validation_data": None, "test_data": None,
        "output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 5, "num_train_epochs": 2,
        "learning_rate": 1e-3, "eval_strategy": "no", "save_strategy": "no", "logging_steps": 1, "use_cpu": True,
        "report_to": "none", "disable_tqdm": True, "seed": 0, "skip_bad": True, "dataloader_num_workers": 2,
    }
    config.update(overrides)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.mark.slow
def test_training_with_skip_bad_finishes_and_totals_the_skips(media, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        trainer, _ = finetune.main([_config(tmp_path, media)])
    # Two epochs over 30 clips, 6 of them broken, decoded in 2 DataLoader worker processes: 12 skips in total.
    metrics = json.loads((tmp_path / "run" / "train_results.json").read_text())
    assert metrics["train_skipped_items"] == 2 * len(BROKEN_KINDS)
    assert metrics["train_precision"] == "float32"  # what the run trained in (this config asks for no bf16)
    assert trainer.state.global_step == 2 * 6  # ceil(30 / 5) steps per epoch: the run went to the end
    last = [record.getMessage() for record in caplog.records if record.name == "training.finetune"][-1]
    assert f"{2 * len(BROKEN_KINDS)} training clips skipped as undecodable" in last


@pytest.mark.slow
def test_training_without_skip_bad_raises_the_contract_error(media, tmp_path):
    with pytest.raises(VideoDecodeError) as caught:
        finetune.main([_config(tmp_path, media, skip_bad=False, num_train_epochs=1)])
    assert any(path in str(caught.value) for path in media["broken"].values())


@pytest.mark.parametrize("kind", ["corrupt_metadata", "no_codec", "truncated", "random_bytes"])
def test_demo_upload_check_refuses_broken_videos_with_its_upload_error(media, tmp_path, kind):
    from inference import DemoEngine, UploadError

    engine = DemoEngine(upload_dir=tmp_path / "uploads")
    path = media["broken"][kind]
    with pytest.raises(UploadError) as caught:
        engine.validate_upload(path, filename=Path(path).name)
    assert str(caught.value).startswith(f"{Path(path).name}: ")


@pytest.mark.slow
def test_two_processes_total_their_skips(media, tmp_path):
    """2 processes (gloo, CPU) x 2 DataLoader workers each: the metric is the sum over all of them."""
    root = Path(__file__).parents[1]
    config = _config(tmp_path, media, per_device_train_batch_size=5, dataloader_num_workers=2)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(root / "training" / "finetune.py"), config]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "train_results.json").read_text())
    # Each epoch shards the 30 clips over the 2 processes: every broken file is decoded once per epoch somewhere.
    assert metrics["train_skipped_items"] == 2 * len(BROKEN_KINDS)
    assert "12 training clips skipped as undecodable" in run.stderr + run.stdout
