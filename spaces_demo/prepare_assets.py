"""Build the Space's assets from a trained model: a small checkpoint folder and a gallery of sample videos.

    python spaces_demo/prepare_assets.py          # outputs/quickstart/model -> checkpoints/t2v2t-synthetic-quickstart
    python spaces_demo/prepare_assets.py --model DIR --name NAME --num-gallery 32

Run from the repository root with the project's environment (it uses the `processing` package to render or reuse
the synthetic benchmark); the Space itself only reads what this writes.

1. `checkpoints/<name>/`: the Hub-ready folder (config, code, processor, tokenizer, test metrics) with the weights
   stored as float16 safetensors (half the size); training leftovers (`checkpoint-*/`, optimizer and trainer state,
   the tokenizer build folder) are left out. A model card (README.md) says how it was trained.
2. `gallery/`: the first `--num-gallery` videos of the benchmark's test split (held out from training; consecutive
   videos form families that differ in one factor, so the gallery has hard negatives), copied byte for byte, and
   `gallery.json` with their ids, captions and family.
3. Verification: the float16 folder is loaded with `AutoModel(..., trust_remote_code=True)` next to the original, and
   their embedding and rerank scores on the gallery must agree within `--tolerance`.

Idempotent and deterministic: the outputs are rebuilt from scratch each run (stale files removed), JSON is written
with sorted keys, and the same model and settings give byte-identical files.
"""

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # the `processing` package, when run as `python spaces_demo/prepare_assets.py`
sys.path.insert(0, str(HERE))  # inference.py, to verify with exactly the code the Space runs

logger = logging.getLogger("prepare_assets")

DEFAULT_MODEL = REPO / "outputs" / "quickstart" / "model"
DEFAULT_CONFIG = REPO / "training" / "configs" / "synthetic_quickstart.json"
DEFAULT_NAME = "t2v2t-synthetic-quickstart"
WEIGHTS = "model.safetensors"
# What a Hub folder needs to load with AutoModel/AutoProcessor; everything else in a training output is left behind.
KEEP_FILES = ("config.json", "processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json",
              "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "test_results.json")
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


def _model_card(name: str, config: dict, config_path: Path | None, metrics: dict, gallery: dict | None) -> str:
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    lines = [
        "---",
        "library_name: transformers",
        "license: apache-2.0",
        "pipeline_tag: feature-extraction",
        "tags: [text-to-video-retrieval, t2v2t, vindlu, custom_code]",
        "---",
        f"# {name}",
        "",
        f"A small T2V2T (fusion_mode `{config.get('fusion_mode')}`: text→video→text fusion with Bypass "
        "cross-attention, built on VindLU) trained from scratch on CPU on the t2v2t project's built-in synthetic",
        f"benchmark (rendered clips of coloured shapes with paraphrased captions), {vision.get('num_frames')} frames "
        f"of {vision.get('image_size')}x{vision.get('image_size')} px per video and a vocabulary of "
        f"{text.get('vocab_size')} tokens: a demo model that knows only the benchmark's words and shapes.",
        "",
        "Trained with `make quickstart` (`python training/quickstart.py`"
        + (f", config `{config_path.relative_to(REPO).as_posix()}`" if config_path else "") + ").",
        "Weights are stored as float16 (converted from the float32 training output by",
        "`spaces_demo/prepare_assets.py`);",
        "load with `AutoModel.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)`.",
        "",
    ]
    if metrics:
        num_test = gallery["settings"]["num_test"] if gallery else None
        scope = f" ({num_test} videos, chance R@1 {100 / num_test:.2g}%)" if num_test else ""
        lines += [
            f"Text→video retrieval on the benchmark's test split{scope}, in %:",
            "",
            "| ranking | R@1 | R@5 | R@10 | MdR |",
            "|---|---|---|---|---|",
        ]
        for stage in ("embedding", "reranked"):
            values = [metrics.get(f"test_{stage}_t2v_{m}") for m in ("R1", "R5", "R10", "MdR")]
            if all(v is not None for v in values):
                lines.append(f"| {stage} | {values[0]:.1f} | {values[1]:.1f} | {values[2]:.1f} | {values[3]:.0f} |")
        lines.append("")
    if gallery:
        lines.append(f"The Space's gallery holds {len(gallery['videos'])} of these test videos, never seen in "
                     "training.")
    return "\n".join(lines) + "\n"


def build_checkpoint(model_dir: Path, out_dir: Path, name: str, config_path: Path | None = None,
                     gallery: dict | None = None) -> Path:
    """Write `out_dir/name` from the trained Hub folder `model_dir` (`gallery`: what `build_gallery` returned, for
    the model card); returns the folder."""
    if not (model_dir / "config.json").is_file() or not (model_dir / WEIGHTS).is_file():
        raise FileNotFoundError(f"{model_dir} is not a trained Hub folder (needs config.json and {WEIGHTS}); train "
                                "one with `make quickstart` or pass --model.")
    config = json.loads((model_dir / "config.json").read_text())
    if "auto_map" not in config:
        raise ValueError(f"{model_dir}/config.json has no auto_map: it was not saved as a Hub folder with its code "
                         "(modeling_t2v2t.hub.export.save_hub_folder), so trust_remote_code cannot load it.")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
    kept, dropped = [], []
    for entry in sorted(model_dir.iterdir()):
        if entry.is_file() and (entry.name in KEEP_FILES or entry.suffix == ".py"):
            shutil.copyfile(entry, staging / entry.name)
            kept.append(entry.name)
        elif entry.name != WEIGHTS:
            dropped.append(entry.name + ("/" if entry.is_dir() else ""))
    sizes = convert_weights(model_dir / WEIGHTS, staging / WEIGHTS)
    metrics_path = staging / "test_results.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if metrics:
        _write_json(metrics_path, metrics)  # sorted keys: stable bytes
    (staging / "README.md").write_text(_model_card(name, config, config_path, metrics, gallery),
                                       encoding="utf-8")
    staging.chmod(0o755)  # mkdtemp makes it 0700
    target = out_dir / name
    _replace_dir(staging, target)
    logger.info("Checkpoint %s: kept %s; weights %d tensors, %.1f MB -> %.1f MB (float16); left out %s.", target,
                kept, sizes["tensors"], sizes["bytes_before"] / 2**20, sizes["bytes_after"] / 2**20, dropped)
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.num_gallery < 1:
        parser.error(f"--num-gallery must be at least 1, got {args.num_gallery}.")
    config_path = args.training_config if args.training_config and args.training_config.is_file() else None
    num_videos, seed = _benchmark_settings(config_path)
    num_videos = args.num_videos if args.num_videos is not None else num_videos
    seed = args.seed if args.seed is not None else seed

    gallery_dir = args.out / "gallery"
    gallery = build_gallery(gallery_dir, args.num_gallery, num_videos, seed)
    target = build_checkpoint(args.model.resolve(), args.out / "checkpoints", args.name, config_path, gallery)
    if not args.skip_verify:
        verify(args.model, target, gallery_dir, args.tolerance)
    logger.info("Done: checkpoint %s, gallery %s.", target, gallery_dir)


if __name__ == "__main__":
    main()
