"""What a Hub folder carries, read from the source with `ast` (independently of transformers' own import scan).

- A tiny T2V2T, X-Pool and CRET model saved with `save_hub_folder` (which calls `register_for_auto_class`) gets
  exactly the `.py` files that its configuration, modeling and processing files import relatively, transitively.
- Together the three model types carry every top-level file of `modeling_t2v2t/` (but `__init__.py`): a top-level
  file no model needs does not belong at the top level.
- Top-level files import only each other, relatively; no file of the package, at any depth, imports `processing`,
  `training` or `spaces_demo`.
"""

import ast
import inspect
import sys
from pathlib import Path

import pytest
from tiny_models import tiny_config, tiny_tokenizer

import modeling_t2v2t
from modeling_t2v2t import (
    CRETConfig,
    CRETModel,
    T2V2TModel,
    T2V2TProcessor,
    T2V2TVideoProcessor,
    XPoolConfig,
    XPoolModel,
    save_hub_folder,
)

PACKAGE = Path(modeling_t2v2t.__file__).parent
TOP_LEVEL = {path.name for path in PACKAGE.glob("*.py")} - {"__init__.py"}
# Folders of this repository the model package must never reach into (the arrows run the other way).
OUTSIDE = ("processing", "training", "spaces_demo")


def _imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a file, including those inside functions (lazy imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def _describe(node: ast.Import | ast.ImportFrom) -> str:
    return f"line {node.lineno}: {ast.unparse(node)}"


def _top_level_targets(name: str) -> tuple[set[str], list[str]]:
    """(the top-level files `name` imports relatively, the imports that leave the top-level set)."""
    targets, escapes = set(), []
    for node in _imports(PACKAGE / name):
        if isinstance(node, ast.Import):
            if node.names[0].name.split(".")[0] in ("modeling_t2v2t", *OUTSIDE):
                escapes.append(_describe(node))
        elif node.level == 0:
            if node.module.split(".")[0] in ("modeling_t2v2t", *OUTSIDE):
                escapes.append(_describe(node))
        # A Hub folder is flat and has no __init__.py: only `from .<file> import ...` of a top-level file resolves.
        elif node.level == 1 and node.module is not None and f"{node.module}.py" in TOP_LEVEL:
            targets.add(f"{node.module}.py")
        else:
            escapes.append(_describe(node))
    return targets, escapes


def _closure(start: set[str]) -> set[str]:
    needed, queue = set(), list(start)
    while queue:
        name = queue.pop()
        if name not in needed:
            needed.add(name)
            queue.extend(_top_level_targets(name)[0])
    return needed


def _tiny_models() -> dict:
    base = tiny_config()
    towers = dict(text_config=base.text_config.to_dict(), vision_config=base.vision_config.to_dict(), embed_dim=16)
    return {
        "t2v2t": T2V2TModel(base),
        "xpool": XPoolModel(XPoolConfig(**towers)),
        "cret": CRETModel(CRETConfig(**towers, num_centers=2, ccm_num_attention_heads=2)),
    }


@pytest.fixture(scope="module")
def hub_folders(tmp_path_factory) -> dict:
    """model type -> (saved folder, the top-level files its config, model and processors are defined in)."""
    root = tmp_path_factory.mktemp("hub_code")
    folders = {}
    for model_type, model in _tiny_models().items():
        video_processor = T2V2TVideoProcessor.from_vision_config(model.config.vision_config)
        processor = T2V2TProcessor(video_processor, tiny_tokenizer(root / f"tok_{model_type}"), max_length=12)
        folder = save_hub_folder(model, processor, root / model_type)
        classes = (type(model.config), type(model), type(processor), type(video_processor))
        folders[model_type] = folder, {Path(inspect.getsourcefile(cls)).name for cls in classes}
    return folders


@pytest.mark.parametrize("model_type", ["t2v2t", "xpool", "cret"])
def test_hub_folder_carries_exactly_the_files_its_model_imports(hub_folders, model_type):
    folder, start = hub_folders[model_type]
    assert start <= TOP_LEVEL, f"{model_type}: classes defined outside the top level: {sorted(start - TOP_LEVEL)}"
    written = {path.name for path in folder.glob("*.py")}
    expected = _closure(start)
    assert written == expected, (
        f"{model_type}: written but not needed {sorted(written - expected)}, needed but missing "
        f"{sorted(expected - written)}"
    )


def test_every_top_level_file_travels_with_some_model_type(hub_folders):
    carried = set().union(*({path.name for path in folder.glob("*.py")} for folder, _ in hub_folders.values()))
    assert carried == TOP_LEVEL, (
        f"top-level files no model type carries (move them to a subpackage): {sorted(TOP_LEVEL - carried)}; "
        f"carried files that are not top-level: {sorted(carried - TOP_LEVEL)}"
    )
    # Each baseline carries its own configuration and modeling file, and none carries another's.
    for model_type, (folder, _) in hub_folders.items():
        names = {path.name for path in folder.glob("*.py")}
        for other in {"xpool", "cret"} - {model_type}:
            assert {f"configuration_{other}.py", f"modeling_{other}.py"}.isdisjoint(names), (model_type, other)


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_top_level_file_imports_only_top_level_files(name):
    _, escapes = _top_level_targets(name)
    assert not escapes, f"{name} imports outside the files a Hub folder carries: {escapes}"


def _resolve(path: Path, node: ast.ImportFrom) -> str | None:
    """Absolute dotted module of a relative import in `path` (under PACKAGE), or None when it climbs out of it."""
    package = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = package[:-1]  # the package a module (or an __init__.py) belongs to
    if node.level - 1 >= len(package):
        return None
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _reaches_outside(path: Path) -> list[str]:
    """The imports of `path` (any depth under PACKAGE) that reach processing/, training/ or spaces_demo/, or climb
    out of the package with a relative import."""
    reached = []
    for node in _imports(path):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif node.level == 0:
            modules = [node.module]
        else:
            resolved = _resolve(path, node)
            modules = [resolved if resolved is not None else "<outside the package>"]
        reached += [f"{_describe(node)} -> {module}" for module in modules
                    if module.split(".")[0] in (*OUTSIDE, "<outside the package>")]
    return reached


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_package_file_imports_data_training_or_demo_code(path):
    reached = _reaches_outside(path)
    assert not reached, f"{path.relative_to(PACKAGE.parent)} reaches outside modeling_t2v2t: {reached}"


def test_the_import_scan_reports_what_it_must_refuse(tmp_path, monkeypatch):
    """The scan itself, on a fake package: each kind of forbidden import is reported, the allowed ones are not."""
    fake = tmp_path / "modeling_t2v2t"
    (fake / "hub").mkdir(parents=True)
    (fake / "ok_t2v2t.py").write_text("import torch\nfrom .other_t2v2t import x\n")
    (fake / "other_t2v2t.py").write_text("x = 1\n")
    (fake / "bad_t2v2t.py").write_text(
        "from .retrieval.index import ExactIndex\nfrom . import other_t2v2t\nfrom ..processing import decoding\n"
        "import training.arguments\nfrom modeling_t2v2t.losses_t2v2t import vtc_loss\n"
        "def lazy():\n    from spaces_demo import app\n"
    )
    (fake / "hub" / "export.py").write_text(
        "from ..losses_t2v2t import x\nfrom . import templates\nfrom ...processing import decoding\n"
        "from ...training import arguments as a\nimport processing.schema\n"
    )
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "PACKAGE", fake)
    monkeypatch.setattr(this, "TOP_LEVEL", {"ok_t2v2t.py", "other_t2v2t.py", "bad_t2v2t.py"})
    assert _top_level_targets("ok_t2v2t.py") == ({"other_t2v2t.py"}, [])
    assert _closure({"ok_t2v2t.py"}) == {"ok_t2v2t.py", "other_t2v2t.py"}
    targets, escapes = _top_level_targets("bad_t2v2t.py")
    assert targets == set() and len(escapes) == 6, escapes
    assert _reaches_outside(fake / "ok_t2v2t.py") == []
    reached = _reaches_outside(fake / "hub" / "export.py")
    assert [line.split(" -> ")[1] for line in reached] == ["<outside the package>", "<outside the package>",
                                                           "processing.schema"], reached
    reached = _reaches_outside(fake / "bad_t2v2t.py")
    assert [line.split(" -> ")[1] for line in reached] == ["<outside the package>", "training.arguments",
                                                           "spaces_demo"], reached  # the last one a lazy import


def _absolute_roots(path: Path) -> set[str]:
    """Top-level packages `path` imports absolutely (relative imports stay inside its own package)."""
    roots = set()
    for node in _imports(path):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted((PACKAGE.parent / "processing").rglob("*.py")),
                         ids=lambda path: str(path.relative_to(PACKAGE.parent)))
def test_data_code_imports_neither_training_nor_demo_code(path):
    assert not _absolute_roots(path) & {"training", "spaces_demo"}, f"{path}: data must not depend on scripts"


@pytest.mark.parametrize("name", ["app.py", "inference.py"])
def test_the_space_imports_no_package_code(name):
    # The Space runs without the package: it reaches the model only through a checkpoint folder's own code.
    path = PACKAGE.parent / "spaces_demo" / name
    assert not _absolute_roots(path) & {"modeling_t2v2t", "processing", "training"}, path
