"""The Space's committed checkpoint is generated, not maintained by hand: its code files are byte-identical to the
library's, `spaces_demo/prepare_assets.py --refresh-code` rebuilds exactly the committed folder from it, and the
repository's `model_card.md` is that checkpoint's rendered card."""

import json
import os
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "spaces_demo"
CHECKPOINT_DIR = SPACE / "checkpoints" / "t2v2t-synthetic-quickstart"
LIBRARY = REPO / "modeling_t2v2t"
REFRESH = "run `python spaces_demo/prepare_assets.py --refresh-code` and commit the result"

import prepare_assets  # noqa: E402


def test_every_code_file_is_a_link_to_the_library_file():
    code = sorted(CHECKPOINT_DIR.glob("*.py"))
    assert code, f"no code files in {CHECKPOINT_DIR}"
    for path in code:
        library = LIBRARY / path.name
        assert library.is_file(), f"{path.name} is not a library file: {REFRESH}"
        assert path.is_symlink() and not Path(os.readlink(path)).is_absolute(), f"{path}: {REFRESH}"
        assert path.resolve() == library.resolve(), f"{path} does not point at {library}: {REFRESH}"


def test_copy_code_writes_the_library_files_byte_for_byte(tmp_path):
    rebuilt = prepare_assets.build_checkpoint(CHECKPOINT_DIR, tmp_path / "checkpoints", CHECKPOINT_DIR.name,
                                              CHECKPOINT_DIR / "training_config.json", copy_code=True)
    code = sorted(rebuilt.glob("*.py"))
    assert [path.name for path in code] == sorted(path.name for path in CHECKPOINT_DIR.glob("*.py"))
    for path in code:
        assert not path.is_symlink() and path.read_bytes() == (LIBRARY / path.name).read_bytes(), path.name


def _comparable(path: Path) -> bytes:
    """A file's bytes; for config.json, without the `transformers_version` stamp that `save_pretrained` writes: a
    fresh install may bring a newer transformers (pyproject allows >=5.23,<6) that saves the same config."""
    if path.name != "config.json":
        return path.read_bytes()
    config = json.loads(path.read_text())
    config.pop("transformers_version", None)
    return json.dumps(config, sort_keys=True).encode()


def test_comparison_ignores_only_the_transformers_version_stamp(tmp_path):
    committed = json.loads((CHECKPOINT_DIR / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**committed, "transformers_version": "9.9.9"}, indent=2))
    assert _comparable(tmp_path / "config.json") == _comparable(CHECKPOINT_DIR / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({**committed, "embed_dim": committed["embed_dim"] + 1}))
    assert _comparable(tmp_path / "config.json") != _comparable(CHECKPOINT_DIR / "config.json")


def test_the_committed_folder_is_what_prepare_assets_writes(tmp_path):
    card = tmp_path / "model_card.md"
    rebuilt = prepare_assets.build_checkpoint(CHECKPOINT_DIR, tmp_path / "checkpoints", CHECKPOINT_DIR.name,
                                              CHECKPOINT_DIR / "training_config.json", model_card=card)
    committed = sorted(path.name for path in CHECKPOINT_DIR.iterdir())
    assert sorted(path.name for path in rebuilt.iterdir()) == committed, REFRESH
    for name in committed:
        assert _comparable(rebuilt / name) == _comparable(CHECKPOINT_DIR / name), f"{name}: {REFRESH}"
        assert (rebuilt / name).is_symlink() == (CHECKPOINT_DIR / name).is_symlink(), f"{name}: {REFRESH}"
    assert card.read_bytes() == (REPO / "model_card.md").read_bytes(), REFRESH


def test_root_model_card_is_the_demo_checkpoints_card():
    card = (REPO / "model_card.md").read_text()
    assert (REPO / "model_card.md").read_bytes() == (CHECKPOINT_DIR / "README.md").read_bytes()
    # It carries the checkpoint's own test results and precision.
    metrics = json.loads((CHECKPOINT_DIR / "test_results.json").read_text())
    assert (f"| embedding | text→video | {metrics['test_embedding_t2v_R1']:.1f} | "
            f"{metrics['test_embedding_t2v_R5']:.1f} | {metrics['test_embedding_t2v_R10']:.1f} |") in card
    assert f"| reranked | text→video | {metrics['test_reranked_t2v_R1']:.1f} |" in card
    assert f"value: {round(metrics['test_reranked_t2v_R1'], 2)}" in card
    # The weights' float16 storage itself: tests/test_spaces_demo.py::test_committed_checkpoint_is_a_small_float16_hub_folder
    assert "| weights | float16 safetensors," in card
