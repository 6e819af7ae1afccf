"""The ablation on the built-in synthetic benchmark: every method trained with the same budget and data, several
seeds each, selected on validation, reported on test with paired-bootstrap comparisons.

    python -m training.ablation                                   # training/configs/ablation/synthetic.json
    python -m training.ablation --variants dual_encoder,t2v2t_self --seeds 5 6   # add seeds to two methods
    python -m training.ablation --report-only                     # results/ablation.md from the committed runs
    python -m training.ablation --git-commit                      # commit each run's result as it finishes
    python -m training.ablation --jobs 2                          # two runs at a time, one thread each

Each run is `python -m training.finetune RUN.json` in its own process (clean state, honest wall-clock time), where
RUN.json is the config's shared settings plus the variant's model fields and the seed. Each finished run's result
(test metrics, every test query's rank, training and wall time, and a hash of RUN.json) is written to
`results/ablation_runs/<variant>/seed<K>.json`, meant to be committed: a run whose result file exists with the same
config hash is not trained again, so an interrupted ablation resumes run by run and a later session extends it by
adding seeds or variants; a result made with another config is rerun and replaced (logged). The report
(`results/ablation.md`, `results/ablation.png`; see `training/ablation_report.py`) is built from every result file
of the current config, whichever invocation made it.

`--jobs N` trains N runs at a time, each with (usable CPUs / N) torch threads (or `$OMP_NUM_THREADS` when set). On
2 cores, two one-thread runs side by side get through more steps per second than one two-thread run (measured on the
quickstart's model: about 1.03 s per step in each of two runs against 0.69 s in one, i.e. 1.9 against 1.4 steps/s):
these small models keep two threads only partly busy. Per-run wall times then overlap; the invocation's start-to-end
time is the ablation's time.
"""

import argparse
import copy
import datetime
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from training.ablation_report import bar_chart, build_report, summarise
from training.cpu_precision import cpu_has_amx, usable_cpus

logger = logging.getLogger("ablation")
ROOT = Path(__file__).resolve().parent.parent
RUNS_FOLDER = "ablation_runs"  # under the results folder: <variant>/seed<K>.json, and invocations.json
INVOCATIONS_FILE = "invocations.json"
_GIT_LOCK = threading.Lock()  # concurrent runs (--jobs) commit one at a time: git's index takes one writer


def merge(base: dict, override: dict) -> dict:
    """Nested dict update: `override`'s leaves replace `base`'s (so a variant can change one field of a sub-config)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def run_config(config: dict, variant: str, seed: int, run_dir) -> dict:
    spec = config["variants"][variant]
    run = merge(config["shared"], {key: value for key, value in spec.items() if not key.startswith("_")})
    if "model_config_replace" in run:  # a method whose config is not the shared T2V2T one (X-Pool, CRET)
        run["model_config"] = run.pop("model_config_replace")
    run.update(seed=seed, output_dir=str(run_dir))
    return run


def config_hash(run: dict) -> str:
    """sha256 of a run's finetune config, without its output folder (where a run is trained changes nothing)."""
    settings = {key: value for key, value in run.items() if key != "output_dir"}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def result_path(results_dir: Path, variant: str, seed: int) -> Path:
    return Path(results_dir) / RUNS_FOLDER / variant / f"seed{seed}.json"


def dumps_result(result: dict) -> str:
    """Indented JSON with the rank lists on one line each (short diffs, readable metrics)."""
    lists = {}

    def placeholder(value):
        if isinstance(value, list) and len(value) > 8:
            lists[f"@@{len(lists)}@@"] = json.dumps(value)
            return f"@@{len(lists) - 1}@@"
        return {key: placeholder(item) for key, item in value.items()} if isinstance(value, dict) else value

    text = json.dumps(placeholder(result), indent=1)
    for key, compact in lists.items():
        text = text.replace(f'"{key}"', compact)
    return text + "\n"


def threads_per_run(jobs: int) -> int | None:
    """Torch threads for each of `jobs` concurrent runs: `None` (the run decides, see `finetune.set_torch_threads`)
    for one job or when `$OMP_NUM_THREADS` is set (the user's choice, kept), else usable CPUs // jobs (at least 1)."""
    if jobs == 1 or os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, usable_cpus() // jobs)


def launch(run_dir: Path, threads: int | None = None) -> int:
    """Train one run: `python -m training.finetune run.json` in its own process (with `threads` torch threads when
    given); its exit status."""
    env = dict(os.environ) if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(run_dir / "train.log", "w") as log:
        return subprocess.run([sys.executable, "-m", "training.finetune", str(run_dir / "run.json")], cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT, env=env).returncode


def collect(run_dir: Path, digest: str) -> dict | None:
    """A finished run's result from its folder, or None when the folder holds no finished run of this config."""
    needed = ("run.json", "test_results.json", "test_ranks.json", "train_results.json", "wall_time.json")
    if not all((run_dir / name).exists() for name in needed):
        return None
    if config_hash(json.loads((run_dir / "run.json").read_text())) != digest:
        return None
    ranks = json.loads((run_dir / "test_ranks.json").read_text())
    ranks.pop("caption_video_ids", None)  # the caption-order hash identifies the queries; ids would triple the size
    wall = json.loads((run_dir / "wall_time.json").read_text())
    train = json.loads((run_dir / "train_results.json").read_text())
    return {"test": json.loads((run_dir / "test_results.json").read_text()),
            "train_runtime": train["train_runtime"], "train_precision": train.get("train_precision"),
            "wall_seconds": wall["wall_seconds"], "invocation": wall.get("invocation"), "test_ranks": ranks}


def train(run: dict, run_dir: Path, digest: str, invocation: str, threads: int | None = None) -> dict:
    """Train one run from scratch in `run_dir` (an unfinished or stale run folder there is removed first)."""
    if run_dir.exists():
        if not (run_dir / "run.json").exists():
            raise RuntimeError(f"{run_dir} exists but holds no run.json: not an ablation run folder; move it away.")
        logger.info("Removing the unfinished or stale run folder %s", run_dir)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(run, indent=1))
    started = time.perf_counter()
    returncode = launch(run_dir, threads)
    if returncode != 0:
        raise RuntimeError(f"Run {run_dir} failed (exit {returncode}); see {run_dir / 'train.log'}.")
    (run_dir / "wall_time.json").write_text(json.dumps({"wall_seconds": time.perf_counter() - started,
                                                        "invocation": invocation}))
    result = collect(run_dir, digest)
    if result is None:
        raise RuntimeError(f"Run {run_dir} finished without test_results.json / test_ranks.json.")
    return result


def git_commit(paths: list[Path], message: str) -> None:
    """Commit these files only (whatever else is staged stays staged); a failure is logged, not raised."""
    cwd = paths[0].parent
    names = [str(path.resolve()) for path in paths]
    with _GIT_LOCK:
        _git_add_and_commit(cwd, names, message)


def _git_add_and_commit(cwd: Path, names: list[str], message: str) -> None:
    for command in (["git", "add", "--", *names], ["git", "commit", "-q", "-m", message, "--", *names]):
        process = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        if process.returncode != 0:
            logger.warning("%s failed: %s", " ".join(command[:2]), (process.stderr or process.stdout).strip())
            return


def ensure_run(config: dict, variant: str, seed: int, output_dir: Path, results_dir: Path, invocation: str,
               commit: bool = False, threads: int | None = None) -> str:
    """Make sure `results_dir`'s result of (variant, seed) is of the current config: "reused" (it was),
    "collected" (a finished run folder of this config), or "trained" (with `threads` torch threads when given).
    Returns which."""
    run_dir = Path(output_dir) / variant / f"seed{seed}"
    run = run_config(config, variant, seed, run_dir)
    digest = config_hash(run)
    path = result_path(results_dir, variant, seed)
    previous = json.loads(path.read_text()) if path.exists() else None
    if previous is not None and previous.get("config_sha256") == digest:
        return "reused"
    if previous is not None:
        logger.warning("%s was made with another config (%s…, now %s…): rerunning it.", path,
                       str(previous.get("config_sha256"))[:12], digest[:12])
    outcome, result = "collected", collect(run_dir, digest)
    if result is None:
        outcome, result = "trained", train(run, run_dir, digest, invocation, threads)
    label = config["variants"][variant].get("_label", variant)
    record = {"variant": variant, "label": label, "seed": seed, "config_sha256": digest, **result}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_result(record))
    replaced = "" if previous is None else f"replaces config {str(previous.get('config_sha256'))[:12]}; "
    if previous is not None:
        logger.warning("Replaced %s (config %s… -> %s…).", path, str(previous.get("config_sha256"))[:12], digest[:12])
    if commit:
        git_commit([path], f"ablation: {variant} seed {seed} ({replaced}config {digest[:12]})")
    return outcome


def load_runs(config: dict, results_dir: Path) -> tuple[dict[str, list[dict]], list[str]]:
    """Every committed result of the config's variants whose config hash is the current one's (variant -> results
    by seed), and the result files left out (another config, or a variant the config lacks)."""
    runs, ignored = {variant: [] for variant in config["variants"]}, []
    folder = Path(results_dir) / RUNS_FOLDER
    for path in sorted(folder.glob("*/seed*.json")):
        variant = path.parent.name
        record = json.loads(path.read_text())
        if variant not in config["variants"]:
            ignored.append(str(path.relative_to(folder)))
            continue
        if record.get("config_sha256") != config_hash(run_config(config, variant, record["seed"], "")):
            ignored.append(f"{path.relative_to(folder)} (another config)")
            continue
        runs[variant].append(record)
    for records in runs.values():
        records.sort(key=lambda record: record["seed"])
    return {variant: records for variant, records in runs.items() if records}, ignored


def load_invocations(results_dir: Path) -> dict[str, dict]:
    path = Path(results_dir) / RUNS_FOLDER / INVOCATIONS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


CODE_FOLDERS = ("modeling_t2v2t", "processing", "training")  # what a run's numbers depend on besides its config


def code_version() -> dict:
    """The commit the code was at, and whether the model, data or training code had uncommitted changes. The config
    hash does not cover the code, and a code change can change a run's numbers (float rounding included), so each
    invocation records this for the report."""
    def git(*arguments):
        process = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True)
        return process.stdout.strip() if process.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_FOLDERS)
    return {"commit": git("rev-parse", "HEAD"), "modified": None if status is None else bool(status)}


def machine_description() -> dict:
    """The CPU a run trained on: its numbers (bf16 kernels, with or without AMX) and speed depend on it."""
    model = None
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    except OSError:
        pass
    return {"cpu": model or platform.processor() or None, "cpus": usable_cpus(), "amx": cpu_has_amx()}


def record_invocation(results_dir: Path, invocation: str, wall_seconds: float, outcomes: dict[str, str],
                      jobs: int = 1, code: dict | None = None, machine: dict | None = None) -> Path:
    """Append this invocation's start-to-end wall time, its runs at a time, the code version it ran (`code_version`
    at its start), the machine (`machine_description`) and what it did to `ablation_runs/invocations.json`."""
    path = Path(results_dir) / RUNS_FOLDER / INVOCATIONS_FILE
    invocations = load_invocations(results_dir)
    invocations[invocation] = {"wall_seconds": wall_seconds, "jobs": jobs, "code": code, "machine": machine,
                               "trained": sorted(run for run, outcome in outcomes.items() if outcome == "trained"),
                               "reused_or_collected": sum(outcome != "trained" for outcome in outcomes.values())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(invocations, indent=1) + "\n")
    return path


def _shown(path: Path) -> Path:
    """A path as a command line in the report shows it: relative to the repository when inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def write_report(config: dict, config_path: Path, results_dir: Path, num_replicates: int) -> str:
    """results/ablation.md and .png from every committed result of the current config."""
    runs, ignored = load_runs(config, results_dir)
    if ignored:
        logger.warning("Result files left out of the report: %s", ", ".join(ignored))
    results_dir.mkdir(parents=True, exist_ok=True)
    labels = {name: spec.get("_label", name) for name, spec in config["variants"].items()}
    selected = summarise(runs)
    chart = None
    if selected:
        bar_chart(selected, labels, 100.0 / int(config["test_videos"]), results_dir / "ablation.png")
        chart = "ablation.png"
    command = f"python -m training.ablation --config {_shown(config_path)}"
    if Path(results_dir).resolve() != ROOT / "results":
        command += f" --results-dir {_shown(Path(results_dir).resolve())}"
    report = build_report(config, runs, command, load_invocations(results_dir), ignored, num_replicates, chart)
    (results_dir / "ablation.md").write_text(report)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "training" / "configs" / "ablation" / "synthetic.json"))
    parser.add_argument("--variants", default=None, help="comma-separated subset of the config's variants")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the config's seeds")
    parser.add_argument("--output-dir", default=str(ROOT / "outputs" / "ablation"), help="one folder per run")
    parser.add_argument("--results-dir", default=str(ROOT / "results"))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--runs-only", action="store_true", help="train the missing runs; no report")
    mode.add_argument("--report-only", action="store_true", help="the report from the committed runs; no training")
    parser.add_argument("--git-commit", action="store_true",
                        help="commit each run's result file (and invocations.json) as soon as it is written")
    parser.add_argument("--replicates", type=int, default=10_000, help="bootstrap replicates per comparison")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at a time, each with usable CPUs / jobs torch threads (see above)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    config_path = Path(args.config).resolve()
    config = json.loads(config_path.read_text())
    variants = args.variants.split(",") if args.variants else list(config["variants"])
    unknown = sorted(set(variants) - set(config["variants"]))
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; the config has {sorted(config['variants'])}.")
    seeds = args.seeds or config["seeds"]
    results_dir = Path(args.results_dir)

    if not args.report_only:
        # Microseconds: two invocations in the same second (e.g. a quick resume) must not share an id.
        invocation = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        code = code_version()  # before any run: --git-commit moves HEAD as results land
        started = time.perf_counter()
        runs = [(variant, seed) for variant in variants for seed in seeds]
        threads = threads_per_run(args.jobs)
        if args.jobs > 1:
            logger.info("%d runs at a time, %s torch thread(s) each", args.jobs,
                        threads if threads is not None else f"$OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")

        def one_run(number, variant, seed):
            logger.info("[%d/%d] %s, seed %d", number, len(runs), variant, seed)
            return ensure_run(config, variant, seed, Path(args.output_dir), results_dir, invocation, args.git_commit,
                              threads)

        # A failed run does not stop the others (each finished run's result is already saved); the first failure
        # is raised once every run has ended.
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {f"{variant}/seed{seed}": pool.submit(one_run, number, variant, seed)
                       for number, (variant, seed) in enumerate(runs, start=1)}
        failures = {run: future.exception() for run, future in futures.items() if future.exception() is not None}
        outcomes = {run: future.result() for run, future in futures.items() if run not in failures}
        if any(outcome == "trained" for outcome in outcomes.values()):
            path = record_invocation(results_dir, invocation, time.perf_counter() - started, outcomes, args.jobs,
                                     code, machine_description())
            if args.git_commit:
                git_commit([path], f"ablation: invocation {invocation}")
        logger.info("Runs: %s", {outcome: list(outcomes.values()).count(outcome) for outcome in set(outcomes.values())})
        if failures:
            run, error = next(iter(failures.items()))
            raise RuntimeError(f"{len(failures)} of {len(runs)} runs failed ({', '.join(failures)}); the first, "
                               f"{run}: {error}") from error
    if not args.runs_only:
        print(write_report(config, config_path, results_dir, args.replicates))


if __name__ == "__main__":
    main()
