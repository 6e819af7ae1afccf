"""Test-wide settings (everything runs offline; nothing may reach a hub) and fixtures shared across modules."""

import json
import os
import sys
from pathlib import Path

import pytest

for name, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
    # Tiny test models gain nothing from intra-op threads, and the subprocess/distributed tests run several
    # processes at once: one thread each keeps 2 cores from being oversubscribed (set before torch is imported;
    # subprocesses inherit it). An explicit setting wins.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}.items():
    os.environ.setdefault(name, value)
if "torch" in sys.modules:  # a plugin imported torch before this file: set its thread count directly
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# The Space's modules (app.py, inference.py, prepare_assets.py) import each other as top-level modules, as they do on
# Spaces; the demo tests import them the same way.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spaces_demo"))


@pytest.fixture(scope="session")
def tiny_train_benchmark(tmp_path_factory):
    """A 24-video synthetic benchmark rendered once per session (4 frames of 32 px): the training-split dataset spec
    (`{"builder": "synthetic", ...}`) and its `metadata.json` videos. Not named `benchmark`: pytest-benchmark, where
    installed, owns that fixture name."""
    out = tmp_path_factory.mktemp("synthetic")
    spec = {"builder": "synthetic", "split": "train", "out_dir": str(out), "num_videos": 24, "seed": 0,
            "workers": 1, "progress": False, "frames": 4, "size": 32}
    from processing.synthetic.benchmark import ensure_benchmark

    ensure_benchmark(str(out), num_videos=24, seed=0, frames=4, size=32, workers=1, progress=False)
    return spec, json.loads((out / "metadata.json").read_text())["videos"]
