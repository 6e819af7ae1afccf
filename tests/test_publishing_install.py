"""Publishing from an installed, non-editable package: the package is pip-installed into a folder outside the
checkout, `python -m training.push_to_hub --dry-run` runs there with only that folder importable, and the Hub
folders it builds for T2V2T, X-Pool and CRET hold their own card, the LICENSE and the code, and load as custom code
in a process that cannot import the package, with the saved model's outputs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_push_to_hub import RESULTS, TRAINING_CONFIG
from test_save_pretrained_hub import BUILDERS, assert_loads_without_the_package
from test_xpool import tiny_processor

from modeling_t2v2t import save_hub_folder

REPO = Path(__file__).resolve().parents[1]
# What a wheel is built from. pip builds in the source tree (it writes build/ and *.egg-info there), so the test
# builds from a copy rather than from the checkout itself.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "modeling_t2v2t", "processing", "training")
TITLES = {"t2v2t": "A **T2V2T** text-to-video", "xpool": "An **X-Pool** text-to-video",
          "cret": "A **CRET** text-to-video"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(path, source / name)
    target = root / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python *args` where only the installed package (not the checkout) can be imported."""
    env = {**os.environ, "PYTHONPATH": str(target), "HF_MODULES_CACHE": str(cwd / "modules")}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_installed_package_publishes_every_model_type(installed, tmp_path):
    assert not str(tmp_path).startswith(str(REPO))
    where = run_installed(installed, tmp_path, "-c", (
        "import importlib.metadata, modeling_t2v2t, training.push_to_hub as script\n"
        "print(modeling_t2v2t.__file__); print(script.__file__)\n"
        "print(importlib.metadata.distribution('t2v2t').locate_file(''))"))
    assert where.returncode == 0, where.stderr[-3000:]
    for line in where.stdout.split():
        assert Path(line).resolve().is_relative_to(installed.resolve()), where.stdout  # not the checkout
    assert (installed / "modeling_t2v2t" / "hub" / "templates" / "model_card_xpool.md").is_file()

    models = {}
    for model_type, build in BUILDERS.items():
        model = build(seed=1)
        processor = tiny_processor(tmp_path / f"tok-{model_type}", model.config)
        model_dir = save_hub_folder(model, processor, tmp_path / "models" / model_type)
        kept = {key: value for key, value in RESULTS.items()
                if model.config.has_joint_encoder or "_reranked_" not in key}
        (model_dir / "test_results.json").write_text(json.dumps(kept))
        (model_dir / "training_config.json").write_text(json.dumps(TRAINING_CONFIG))

        out = tmp_path / "hub" / model_type
        done = run_installed(installed, tmp_path, "-m", "training.push_to_hub", str(model_dir), "--repo-id",
                             f"me/{model_type}-tiny", "--output-dir", str(out), "--dry-run")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Dry run: nothing uploaded." in done.stdout

        names = {path.name for path in out.iterdir()}
        assert {"README.md", "LICENSE", "CITATION.cff", "config.json", "model.safetensors",
                "processor_config.json", f"modeling_{model_type}.py", f"configuration_{model_type}.py",
                "processing_t2v2t.py", "video_processing_t2v2t.py"} <= names
        assert (out / "LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()
        for name in names:
            if name.endswith(".py"):  # the installed files, byte for byte the library's
                assert (out / name).read_bytes() == (REPO / "modeling_t2v2t" / name).read_bytes(), name
        card = (out / "README.md").read_text()
        assert TITLES[model_type] in card
        assert yaml.safe_load(card.split("---\n")[1])["model-index"][0]["name"] == f"{model_type}-tiny"
        models[out] = (model, processor)

    assert_loads_without_the_package(tmp_path, models)
