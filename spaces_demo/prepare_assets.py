"""Build the Space's assets from a trained model: a small checkpoint folder and a gallery of sample videos.

    python spaces_demo/prepare_assets.py          # outputs/quickstart/model -> checkpoints/t2v2t-synthetic-quickstart
    python spaces_demo/prepare_assets.py --model DIR --name NAME --num-gallery 32
    python spaces_demo/prepare_assets.py --refresh-code   # rewrite the committed folder from the library, same weights

Run from the repository root with the project's environment (the `t2v2t` package installed; it uses `processing`
to render or reuse the synthetic benchmark); the Space itself only reads what this writes.

1. `checkpoints/<name>/`: the Hub folder `training/push_to_hub.py --dry-run` would build (config, the library's code
   files, processor, tokenizer, test metrics, model card, training config, LICENSE, CITATION.cff) with the weights
   stored as float16 safetensors (half the size). Everything but the weights is written by the library
   (`save_pretrained` of the model and processor loaded with the package's classes, then
   `modeling_t2v2t.hub.publishing.build_hub_folder`), never copied from the training output, so the folder's code
   is the library's. Training leftovers (`checkpoint-*/`, optimizer and trainer state) are left out. The model card
   is also written to the repository's `model_card.md` (for the default checkpoint): the card of the model the
   project ships.
2. `gallery/`: the first `--num-gallery` videos of the benchmark's test split (held out from training; consecutive
   videos form families that differ in one factor, so the gallery has hard negatives), copied byte for byte, and
   `gallery.json` with their ids, captions and family.
3. Verification: the float16 folder is loaded with `AutoModel(..., trust_remote_code=True)` next to the original, and
   their embedding and rerank scores on the gallery must agree within `--tolerance`.

The checkpoint's `.py` files are relative symbolic links to the library's files (`--copy-code` writes copies instead):
git keeps one copy of the model code, the Space can never run stale code, and `hf upload` / `upload_folder` upload
the files the links point to, so the Space receives ordinary files.

`--refresh-code` rebuilds step 1 from the committed checkpoint itself (no training output needed; float16 weights
round-trip through float32 unchanged) and leaves the gallery alone: run it after changing a model's config format or
the card template (tests/test_demo_checkpoint.py checks that the committed folder is what it writes).

Idempotent and deterministic: the outputs are rebuilt from scratch each run (stale files removed), JSON is written
with sorted keys, and the same model and settings give byte-identical files.
"""

import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoProcessor

# Importing the package registers its model types, so the Auto classes below give the library's own classes.
import modeling_t2v2t
from modeling_t2v2t.hub.publishing import build_hub_folder

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

logger = logging.getLogger("prepare_assets")

DEFAULT_MODEL = REPO / "outputs" / "quickstart" / "model"
DEFAULT_CONFIG = REPO / "training" / "configs" / "synthetic_quickstart.json"
DEFAULT_NAME = "t2v2t-synthetic-quickstart"
DEFAULT_MODEL_CARD = REPO / "model_card.md"
WEIGHTS = "model.safetensors"
RESULTS = "test_results.json"
TRAIN_RESULTS = "train_results.json"
GALLERY_MANIFEST = "gallery.json"


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _replace_dir(staging: Path, target: Path) -> None:
    """Swap `staging` in for `target`, so an interrupted run never leaves a half-written folder in place."""
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def convert_weights(source: Path, target: Path) -> dict:
    """Copy safetensors weights, storing floating tensors as float16 (integer buffers unchanged)."""
    tensors = {}
    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata() or {}
        for key in sorted(handle.keys()):
            tensor = handle.get_tensor(key)
            if tensor.is_floating_point():
                if tensor.abs().max() > torch.finfo(torch.float16).max:
                    raise ValueError(f"{source}: tensor {key!r} exceeds the float16 range; keep float32 weights.")
                tensor = tensor.to(torch.float16)
            tensors[key] = tensor.contiguous()
    save_file(tensors, str(target), metadata={**metadata, "format": "pt"})
    return {"tensors": len(tensors), "bytes_before": source.stat().st_size, "bytes_after": target.stat().st_size}


def save_with_library(model_dir: Path, out_dir: Path) -> None:
    """
    Load `model_dir` with this package's classes (in float32) and `save_pretrained` model and processor into
    `out_dir`: config.json with `auto_map`, the library's code files, processor and tokenizer files, float32 weights.
    """
    config = AutoConfig.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, config=config, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(model_dir)
    if not type(model).__module__.startswith("modeling_t2v2t."):
        raise ValueError(f"{model_dir} loaded as {type(model).__module__}.{type(model).__name__}, not as a class of "
                         "this package: its model_type is not one the package registers.")
    # transformers keeps how the tokenizer was loaded (from a local folder, offline) in its init kwargs and would
    # save it; that describes this machine, not the tokenizer, and would make the files differ between machines.
    for key in ("is_local", "local_files_only"):
        processor.tokenizer.init_kwargs.pop(key, None)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def link_code_to_library(folder: Path, target: Path) -> list[str]:
    """Replace each `.py` file of `folder` (to be moved to `target`) by a relative symbolic link to the library file
    of the same name, after checking the two are identical. Returns the linked file names."""
    library = Path(modeling_t2v2t.__file__).resolve().parent
    linked = []
    for path in sorted(folder.glob("*.py")):
        source = library / path.name
        if not source.is_file() or source.read_bytes() != path.read_bytes():
            raise ValueError(f"{path.name} written by save_pretrained is not the library file {source}.")
        path.unlink()
        path.symlink_to(os.path.relpath(source, target.resolve()))
        linked.append(path.name)
    return linked


def build_checkpoint(model_dir: Path, out_dir: Path, name: str, config_path: Path | None = None,
                     model_card: Path | None = None, copy_code: bool = False) -> Path:
    """
    Write `out_dir/name` from the saved model folder `model_dir` (a training output, or the checkpoint folder
    itself to refresh it) and return it; also copy its model card to `model_card` when given. Code files are links
    to the library's files unless `copy_code`.
    """
    model_dir = model_dir.resolve()
    if not (model_dir / "config.json").is_file() or not (model_dir / WEIGHTS).is_file():
        raise FileNotFoundError(f"{model_dir} is not a saved model folder (needs config.json and {WEIGHTS}); train "
                                "one with `make quickstart` or pass --model.")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
    try:
        with tempfile.TemporaryDirectory(prefix="prepare-assets-") as scratch:
            saved = Path(scratch) / name
            save_with_library(model_dir, saved)
            float32 = Path(scratch) / "float32.safetensors"
            (saved / WEIGHTS).rename(float32)
            sizes = convert_weights(float32, saved / WEIGHTS)
            # Test metrics for the card, and train_results.json for the precision the run actually trained in.
            for results in (RESULTS, TRAIN_RESULTS):
                if (model_dir / results).is_file():
                    _write_json(saved / results, json.loads((model_dir / results).read_text()))  # sorted: stable bytes
            training_config = config_path
            if training_config is None and (model_dir / "training_config.json").is_file():
                training_config = model_dir / "training_config.json"
            build_hub_folder(saved, staging, training_config=training_config, model_name=name)
        staging.chmod(0o755)  # mkdtemp makes it 0700
        target = out_dir / name
        if not copy_code:
            link_code_to_library(staging, target)
        _replace_dir(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    if model_card is not None:
        shutil.copyfile(target / "README.md", model_card)
    logger.info("Checkpoint %s: %s; weights %d tensors, %.1f MB (float32) -> %.1f MB (float16)%s.", target,
                sorted(path.name for path in target.iterdir()), sizes["tensors"], sizes["bytes_before"] / 2**20,
                sizes["bytes_after"] / 2**20, f"; model card copied to {model_card}" if model_card else "")
    return target


def build_gallery(out_dir: Path, num_gallery: int, num_videos: int, seed: int) -> dict:
    """Copy the first `num_gallery` test videos of the synthetic benchmark (`num_videos`, `seed`) into `out_dir`;
    returns the manifest written as `gallery.json`."""
    from processing.synthetic.benchmark import ensure_benchmark

    benchmark = ensure_benchmark(num_videos=num_videos, seed=seed, progress=False)
    annotations = json.loads(Path(benchmark["annotations"]["test"]).read_text())
    metadata = {video["video"]: video for video in json.loads(Path(benchmark["metadata"]).read_text())["videos"]}
    if num_gallery > len(annotations):
        raise ValueError(f"--num-gallery {num_gallery} exceeds the {len(annotations)} annotated test videos.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".gallery.", dir=out_dir.parent))
    videos = []
    for entry in annotations[:num_gallery]:
        meta = metadata[entry["video"]]
        file_name = f"{meta['video_id']}.mp4"
        shutil.copyfile(Path(benchmark["video_root"]) / entry["video"], staging / file_name)
        captions = entry["caption"] if isinstance(entry["caption"], list) else [entry["caption"]]
        videos.append({"video_id": meta["video_id"], "file": file_name, "captions": captions,
                       "family": meta["family"], "factor": meta["factor"]})
    settings = benchmark["settings"]
    manifest = {
        "source": {
            "benchmark": "t2v2t built-in synthetic benchmark, test split (held out from training)",
            "command": (f"python -m processing.synthetic.benchmark --out DIR --num-videos {settings['num_videos']} "
                        f"--seed {settings['seed']}"),
        },
        "settings": settings,
        "videos": videos,
    }
    _write_json(staging / GALLERY_MANIFEST, manifest)
    staging.chmod(0o755)
    _replace_dir(staging, out_dir)
    size = sum(path.stat().st_size for path in out_dir.iterdir())
    logger.info("Gallery %s: %d videos, %.2f MB.", out_dir, len(videos), size / 2**20)
    return manifest


def verify(original: Path, converted: Path, gallery_dir: Path, tolerance: float) -> dict:
    """Load both folders as the Space does, score every gallery video against a few captions, compare."""
    from inference import DemoEngine

    worst = {"embedding": 0.0, "rerank": 0.0}
    with tempfile.TemporaryDirectory() as scratch:
        checkpoints = Path(scratch) / "checkpoints"
        checkpoints.mkdir()
        # Distinct folder names: transformers caches remote code per folder name.
        os.symlink(original.resolve(), checkpoints / "verify-original-float32")
        os.symlink(converted.resolve(), checkpoints / "verify-converted-float16")
        engine = DemoEngine(checkpoints, gallery_dir, upload_dir=Path(scratch) / "uploads")
        queries = [record.captions[0] for record in engine.gallery[:: max(1, len(engine.gallery) // 4)]]
        num = len(engine.gallery)
        for query in queries:
            results = [engine.search(query, name, k=num, rank_by="embedding")
                       for name in ("verify-original-float32", "verify-converted-float16")]
            scores = [{hit.record.video_id: hit for hit in result.hits} for result in results]
            for video_id, hit in scores[0].items():
                other = scores[1][video_id]
                worst["embedding"] = max(worst["embedding"], abs(hit.embedding_score - other.embedding_score))
                if hit.rerank_score is not None and other.rerank_score is not None:
                    worst["rerank"] = max(worst["rerank"], abs(hit.rerank_score - other.rerank_score))
    logger.info("float16 vs float32 on %d queries x %d videos: max |embedding score diff| %.2e, "
                "max |rerank score diff| %.2e.", len(queries), num, worst["embedding"], worst["rerank"])
    for what, diff in worst.items():
        if diff > tolerance:
            raise ValueError(f"The float16 checkpoint {converted} differs from {original} by {diff:.3g} in {what} "
                             f"scores (tolerance {tolerance}); keep float32 weights or investigate.")
    return worst


def _benchmark_settings(config_path: Path | None) -> tuple[int, int]:
    """(num_videos, seed) of the benchmark the model was tested on, from the training config's test_data."""
    if config_path is None or not config_path.is_file():
        return 1000, 0
    test = json.loads(config_path.read_text()).get("test_data") or {}
    if test.get("builder") != "synthetic":
        raise ValueError(f"{config_path}: test_data is not the synthetic benchmark ({test!r}); pass --num-videos "
                         "and --seed for the gallery.")
    return int(test.get("num_videos", 256)), int(test.get("seed", 0))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="trained Hub-ready folder")
    parser.add_argument("--name", default=DEFAULT_NAME, help="folder name under checkpoints/ (shown in the UI)")
    parser.add_argument("--training-config", type=Path, default=DEFAULT_CONFIG,
                        help="the config the model was trained with (for the model card and the gallery split)")
    parser.add_argument("--num-gallery", type=int, default=32, help="test videos copied into the gallery")
    parser.add_argument("--num-videos", type=int, default=None, help="benchmark size (default: from the config)")
    parser.add_argument("--seed", type=int, default=None, help="benchmark seed (default: from the config)")
    parser.add_argument("--out", type=Path, default=HERE, help="the Space folder (holds checkpoints/ and gallery/)")
    # 0.03: rerank scores (VTM log-odds + similarity / temperature) span tens of units, so this is ~0.1% of them.
    parser.add_argument("--tolerance", type=float, default=3e-2, help="max score difference float16 vs float32")
    parser.add_argument("--skip-verify", action="store_true", help="do not compare the float16 copy")
    parser.add_argument("--refresh-code", action="store_true",
                        help="rebuild checkpoints/NAME from itself with the library's current code, configs and "
                             "card (same weights; no training output or gallery needed)")
    parser.add_argument("--copy-code", action="store_true",
                        help="write the code files as copies, not links to the library (a self-contained folder, "
                             "e.g. to `git push` to a Space repository)")
    parser.add_argument("--model-card", type=Path, default=None,
                        help="also write the checkpoint's model card here (default: the repository's model_card.md "
                             "for the default checkpoint in the default Space folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.num_gallery < 1:
        parser.error(f"--num-gallery must be at least 1, got {args.num_gallery}.")
    model_card = args.model_card
    if model_card is None and args.name == DEFAULT_NAME and args.out.resolve() == HERE:
        model_card = DEFAULT_MODEL_CARD
    config_path = args.training_config if args.training_config and args.training_config.is_file() else None

    if args.refresh_code:
        current = args.out / "checkpoints" / args.name
        # The checkpoint's own copy of its training config, once it has one, is what it was trained with.
        own_config = current / "training_config.json"
        target = build_checkpoint(current, args.out / "checkpoints", args.name,
                                  own_config if own_config.is_file() else config_path, model_card, args.copy_code)
        logger.info("Done: refreshed %s from the library (weights unchanged; gallery untouched).", target)
        return

    num_videos, seed = _benchmark_settings(config_path)
    num_videos = args.num_videos if args.num_videos is not None else num_videos
    seed = args.seed if args.seed is not None else seed
    gallery_dir = args.out / "gallery"
    build_gallery(gallery_dir, args.num_gallery, num_videos, seed)
    target = build_checkpoint(args.model, args.out / "checkpoints", args.name, config_path, model_card,
                              args.copy_code)
    if not args.skip_verify:
        verify(args.model, target, gallery_dir, args.tolerance)
    logger.info("Done: checkpoint %s, gallery %s.", target, gallery_dir)


if __name__ == "__main__":
    main()
