"""The ablation on the built-in synthetic benchmark: every method trained with the same budget and data, several
seeds each, selected on validation, reported on test.

    python training/ablation.py                                   # training/configs/ablation/synthetic.json
    python training/ablation.py --variants dual_encoder,t2v2t_self --seeds 0 1 2

Each run is `python training/finetune.py RUN.json` in its own process (clean state, honest wall-clock time), where
RUN.json is the config's shared settings plus the variant's model fields and the seed. A finished run (its
`test_results.json` exists) is not trained again, so an interrupted ablation resumes. Writes `results/ablation.md`
(mean ± std over seeds), `results/ablation.png` (bar chart) and `results/ablation_runs.json` (every run's numbers).
"""

import argparse
import copy
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger("ablation")
ROOT = Path(__file__).resolve().parent.parent
METRICS = ("R1", "R5", "R10", "MdR", "MnR")


def merge(base: dict, override: dict) -> dict:
    """Nested dict update: `override`'s leaves replace `base`'s (so a variant can change one field of a sub-config)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def run_config(config: dict, variant: str, seed: int, run_dir: Path) -> dict:
    spec = config["variants"][variant]
    run = merge(config["shared"], {key: value for key, value in spec.items() if not key.startswith("_")})
    if "model_config_replace" in run:  # a method whose config is not the shared T2V2T one (X-Pool, CRET)
        run["model_config"] = run.pop("model_config_replace")
    run.update(seed=seed, output_dir=str(run_dir))
    return run


def train(run: dict, run_dir: Path) -> dict:
    """Train one run in its own process (or reuse a finished one); its test metrics and training time."""
    results_file = run_dir / "test_results.json"
    if not results_file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps(run, indent=1))
        started = time.perf_counter()
        with open(run_dir / "train.log", "w") as log:
            process = subprocess.run([sys.executable, "-m", "training.finetune", str(run_dir / "run.json")],
                                     cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if process.returncode != 0:
            raise RuntimeError(f"Run {run_dir} failed (exit {process.returncode}); see {run_dir / 'train.log'}.")
        (run_dir / "wall_time.json").write_text(json.dumps({"wall_seconds": time.perf_counter() - started}))
    metrics = json.loads(results_file.read_text())
    train_metrics = json.loads((run_dir / "train_results.json").read_text())
    return {"test": metrics, "train_runtime": train_metrics["train_runtime"],
            "wall_seconds": json.loads((run_dir / "wall_time.json").read_text())["wall_seconds"]}


def selected_stage(metrics: dict) -> str:
    """The scores each method retrieves with: reranked when it has a joint encoder, else embedding-only."""
    return "reranked" if "test_reranked_t2v_R1" in metrics else "embedding"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: dict[str, list[dict]], stage: str | None = None) -> dict[str, dict]:
    """{variant: {"t2v_R1": (mean, std), ..., "train_minutes": (mean, std), "stage": ...}} over seeds."""
    table = {}
    for variant, seeds in runs.items():
        chosen = stage or selected_stage(seeds[0]["test"])
        if any(f"test_{chosen}_t2v_R1" not in run["test"] for run in seeds):
            continue
        row = {"stage": chosen, "seeds": len(seeds)}
        for direction in ("t2v", "v2t"):
            for metric in METRICS:
                row[f"{direction}_{metric}"] = mean_std([run["test"][f"test_{chosen}_{direction}_{metric}"]
                                                         for run in seeds])
        row["train_minutes"] = mean_std([run["train_runtime"] / 60 for run in seeds])
        table[variant] = row
    return table


def markdown_table(table: dict[str, dict], labels: dict[str, str]) -> str:
    header = ["method", "scores"] + [f"{d} {m}" for d in ("t2v", "v2t") for m in METRICS] + ["train min"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, row in table.items():
        cells = [labels.get(variant, variant), row["stage"]]
        for direction in ("t2v", "v2t"):
            for metric in METRICS:
                mean, std = row[f"{direction}_{metric}"]
                cells.append(f"{mean:.1f} ± {std:.1f}")
        mean, std = row["train_minutes"]
        cells.append(f"{mean:.1f} ± {std:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(table: dict[str, dict], labels: dict[str, str], chance: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    variants = list(table)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, metric in zip(axes, ("R1", "R5")):
        for offset, direction in ((-0.2, "t2v"), (0.2, "v2t")):
            means = [table[v][f"{direction}_{metric}"][0] for v in variants]
            stds = [table[v][f"{direction}_{metric}"][1] for v in variants]
            axis.bar([i + offset for i in range(len(variants))], means, width=0.4, yerr=stds, capsize=3,
                     label=f"{direction} (mean ± std over seeds)")
        axis.axhline(chance * (1 if metric == "R1" else 5), color="grey", linestyle="--", linewidth=1,
                     label="chance (t2v)")
        axis.set_xticks(range(len(variants)), [labels.get(v, v) for v in variants], rotation=30, ha="right")
        axis.set_ylabel(f"{metric} (%)")
        axis.set_title(f"Test {metric}, synthetic benchmark")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "training" / "configs" / "ablation" / "synthetic.json"))
    parser.add_argument("--variants", default=None, help="comma-separated subset of the config's variants")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the config's seeds")
    parser.add_argument("--output-dir", default=str(ROOT / "outputs" / "ablation"), help="one folder per run")
    parser.add_argument("--results-dir", default=str(ROOT / "results"))
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    config = json.loads(Path(args.config).read_text())
    variants = args.variants.split(",") if args.variants else list(config["variants"])
    unknown = sorted(set(variants) - set(config["variants"]))
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; the config has {sorted(config['variants'])}.")
    seeds = args.seeds or config["seeds"]
    labels = {name: spec.get("_label", name) for name, spec in config["variants"].items()}

    runs: dict[str, list[dict]] = {}
    total = len(variants) * len(seeds)
    for number, (variant, seed) in enumerate(((v, s) for v in variants for s in seeds), start=1):
        run_dir = Path(args.output_dir) / variant / f"seed{seed}"
        logger.info("[%d/%d] %s, seed %d -> %s", number, total, variant, seed, run_dir)
        runs.setdefault(variant, []).append(train(run_config(config, variant, seed, run_dir), run_dir))

    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "ablation_runs.json").write_text(json.dumps(
        {variant: [{"seed": seed, **run} for seed, run in zip(seeds, seeded)] for variant, seeded in runs.items()},
        indent=1))
    selected, embedding = summarise(runs), summarise(runs, stage="embedding")
    test_videos = int(config["test_videos"])
    bar_chart(selected, labels, 100.0 / test_videos, results_dir / "ablation.png")
    report = [
        "# Ablation on the built-in synthetic benchmark",
        "",
        f"Command: `python training/ablation.py --config {Path(args.config).relative_to(ROOT) if Path(args.config).is_relative_to(ROOT) else args.config}"
        f" --seeds {' '.join(map(str, seeds))}`. Budget per run (the same for every method): "
        f"{config['_budget']}. Test split: {test_videos} videos (chance R@1 = {100 / test_videos:.2f}%). "
        f"Mean ± std over {len(seeds)} seeds; checkpoints selected on validation mean recall; training time is "
        "the Trainer's `train_runtime` (including validation passes).",
        "",
        "## Each method's own retrieval (reranked top-k for joint encoders, embedding-only otherwise)",
        "",
        markdown_table(selected, labels),
        "",
        "## Embedding-only retrieval for every method",
        "",
        markdown_table(embedding, labels),
        "",
        "![ablation](ablation.png)",
        "",
    ]
    (results_dir / "ablation.md").write_text("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
