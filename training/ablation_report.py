"""The ablation's report (results/ablation.md) from its per-run results: each method's mean ± std over its seeds,
paired-bootstrap comparisons of the methods the paper's claims are about and of X-Pool with the dual encoder
(95% intervals over seeds and test queries, and whether each difference is decided), the wall time, and a
paragraph on the claims written from the comparisons' decisions (`claims_paragraph`), so the text follows the
numbers.

A run's result (see `training/ablation.py`) is a dict with `seed`, `test` (the test metrics), `train_runtime`,
`wall_seconds`, optionally `invocation`, and `test_ranks` (`modeling_t2v2t.retrieval.query_ranks.ranks_record`
without the caption ids).
"""

import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modeling_t2v2t.retrieval.paired_bootstrap import PairedDifference, paired_bootstrap_recall
from modeling_t2v2t.retrieval.query_ranks import record_ranks

logger = logging.getLogger(__name__)

METRICS = ("R1", "R5", "R10", "MdR", "MnR")
# The VindLU-family joint models; the best of them (highest mean t2v R@1) is compared with the dual encoder.
JOINT_VARIANTS = ("vindlu", "naive_t2v2t", "t2v2t_self", "t2v2t_null")
BEST_JOINT = "<best joint>"
MIN_SHARED_SEEDS = 2  # one seed leaves training noise unmeasured: no interval is drawn from it
TIME_LIMIT_MINUTES = 150  # the limit on the whole ablation's wall time (2 cores)


@dataclass(frozen=True)
class ComparisonSpec:
    """`a` vs `b` (variant names; `a` may be `BEST_JOINT`); `claim`: what "A better" would support; `paper`: a
    claim of the paper (else a choice of this implementation, which the comparison settles, introduced by `lead`)."""

    title: str
    a: str
    b: str
    claim: str
    paper: bool = True
    lead: str = "this implementation's default"


COMPARISONS = (
    ComparisonSpec("T2V2T (bypass self) vs VindLU-style", "t2v2t_self", "vindlu",
                   "T2V2T's text→video→text fusion retrieves better than VindLU-style video→text fusion"),
    ComparisonSpec("T2V2T vs naive T2V2T", "t2v2t_self", "naive_t2v2t",
                   "Bypass cross-attention improves on naive T2V2T (text→video cross-attention without a bypass)"),
    ComparisonSpec("bypass self vs null", "t2v2t_self", "t2v2t_null",
                   'bypass "self" retrieves better than bypass "null"', paper=False),
    ComparisonSpec("best joint model vs dual encoder", BEST_JOINT, "dual_encoder",
                   "a joint encoder's reranking retrieves better than a dual encoder trained the same way"),
    # The check that X-Pool, with its from-scratch recipe (no pooling dropout, pooling at lr 1e-5;
    # results/xpool_from_scratch.md), learns at least as well as the dual encoder on the same towers.
    ComparisonSpec("X-Pool vs dual encoder", "xpool", "dual_encoder",
                   "X-Pool's text-conditioned pooling retrieves better than the dual encoder's mean", paper=False,
                   lead="X-Pool's from-scratch recipe (no pooling dropout, pooling at lr 1e-5)"),
)


@dataclass
class Comparison:
    """One comparison's outcome: the resolved variants, the seeds both have, each direction's R@1 difference (None
    with `reason` when it could not be computed) and the number of queries per direction."""

    spec: ComparisonSpec
    a: str | None
    b: str
    seeds: list[int] = field(default_factory=list)
    t2v: PairedDifference | None = None
    v2t: PairedDifference | None = None
    reason: str | None = None


def selected_stage(metrics: dict) -> str:
    """The scores each method retrieves with: reranked when it has a joint encoder, else embedding-only."""
    return "reranked" if "test_reranked_t2v_R1" in metrics else "embedding"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: dict[str, list[dict]], stage: str | None = None) -> dict[str, dict]:
    """{variant: {"t2v_R1": (mean, std), ..., "train_minutes": (mean, std), "stage": ..., "seeds": n}} over seeds."""
    table = {}
    for variant, seeds in runs.items():
        if not seeds:
            continue
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
    header = ["method", "scores", "seeds"] + [f"{d} {m}" for d in ("t2v", "v2t") for m in METRICS] + ["train min"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, row in table.items():
        cells = [labels.get(variant, variant), row["stage"], str(row["seeds"])]
        for direction in ("t2v", "v2t"):
            for metric in METRICS:
                mean, std = row[f"{direction}_{metric}"]
                cells.append(f"{mean:.1f} ± {std:.1f}")
        mean, std = row["train_minutes"]
        cells.append(f"{mean:.1f} ± {std:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_joint(runs: dict[str, list[dict]]) -> str | None:
    """The joint model (`JOINT_VARIANTS`) with the highest mean t2v R@1 of its own scores, or None."""
    table = summarise({variant: runs[variant] for variant in JOINT_VARIANTS if runs.get(variant)})
    return max(table, key=lambda variant: table[variant]["t2v_R1"][0], default=None)


def _stacked_ranks(records: list[dict], direction: str) -> np.ndarray:
    return np.stack([record_ranks(record["test_ranks"], selected_stage(record["test"]), direction)
                     for record in records])


def compare(runs: dict[str, list[dict]], spec: ComparisonSpec, num_replicates: int = 10_000,
            seed: int = 0) -> Comparison:
    """Paired bootstrap of R@1 (t2v and v2t, each method's own scores) over the seeds both methods have."""
    a = best_joint(runs) if spec.a == BEST_JOINT else spec.a
    comparison = Comparison(spec=spec, a=a, b=spec.b)
    missing = [name for name in (a, spec.b) if name is None or not runs.get(name)]
    if missing:
        comparison.reason = "no runs of " + " or ".join("a joint model" if name is None else name
                                                        for name in missing)
        return comparison
    by_seed = {name: {record["seed"]: record for record in runs[name]} for name in (a, spec.b)}
    comparison.seeds = sorted(set(by_seed[a]) & set(by_seed[spec.b]))
    if len(comparison.seeds) < MIN_SHARED_SEEDS:
        comparison.reason = (f"{a} and {spec.b} share {len(comparison.seeds)} seed(s); a comparison needs "
                             f"≥ {MIN_SHARED_SEEDS}")
        return comparison
    records = {name: [by_seed[name][s] for s in comparison.seeds] for name in (a, spec.b)}
    if any("test_ranks" not in record for chosen in records.values() for record in chosen):
        comparison.reason = "some runs have no per-query ranks"
        return comparison
    if len({record["test_ranks"]["caption_order_sha256"] for chosen in records.values() for record in chosen}) > 1:
        comparison.reason = "the runs ranked different test queries (caption-order hashes differ)"
        return comparison
    try:
        for direction in ("t2v", "v2t"):
            setattr(comparison, direction, paired_bootstrap_recall(
                _stacked_ranks(records[a], direction), _stacked_ranks(records[spec.b], direction), k=1,
                num_replicates=num_replicates, seed=seed))
    except (KeyError, ValueError) as error:  # a malformed result file: say so in the row, keep the report
        comparison.t2v = comparison.v2t = None
        comparison.reason = f"unusable ranks ({error})"
    return comparison


def _interval(difference: PairedDifference | None) -> tuple[str, str, str]:
    if difference is None:
        return "-", "-", "-"
    return f"{difference.difference:+.1f}", f"[{difference.low:+.1f}, {difference.high:+.1f}]", difference.verdict()


def comparisons_table(comparisons: list[Comparison], labels: dict[str, str]) -> str:
    header = ["comparison (A vs B)", "A", "B", "Δ t2v R@1 (points)", "95% CI", "decided", "Δ v2t R@1 (points)",
              "95% CI", "decided", "seeds", "queries (t2v / v2t)"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|" + "---:|---|---|" * 2 + "---|---|"]
    for comparison in comparisons:
        cells = [comparison.spec.title, labels.get(comparison.a, comparison.a or "-"),
                 labels.get(comparison.b, comparison.b), *_interval(comparison.t2v), *_interval(comparison.v2t)]
        if comparison.t2v is None:
            cells[5] = f"not computed: {comparison.reason}"
            cells += [str(len(comparison.seeds)), "-"]
        else:
            cells += [str(len(comparison.seeds)), f"{comparison.t2v.num_queries} / {comparison.v2t.num_queries}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# The plain-language reading of the comparisons: written from their decided flags, never by hand.
# ---------------------------------------------------------------------------------------------------------------
def claim_verdict(comparison: Comparison) -> str:
    """`supported` (A decided better on t2v R@1), `contradicted` (B decided better), `not decided`, or
    `not tested (why)`."""
    if comparison.t2v is None:
        return f"not tested ({comparison.reason})"
    if not comparison.t2v.decided:
        return "not decided"
    return "supported" if comparison.t2v.better == "A" else "contradicted"


def claims_paragraph(comparisons: list[Comparison], labels: dict[str, str]) -> str:
    """What the benchmark says about each claim, from each comparison's t2v R@1 decision (v2t alongside)."""
    lines = ["Each verdict follows the t2v R@1 comparison above: **supported** when the 95% interval of A − B lies "
             "above 0, **contradicted** when it lies below 0, **not decided** when it contains 0 (the benchmark, "
             "at this budget and number of seeds, cannot tell the two apart).", ""]
    for comparison in comparisons:
        verdict = claim_verdict(comparison)
        if comparison.t2v is None:
            evidence = ""
        else:
            t2v, v2t = comparison.t2v, comparison.v2t
            evidence = (f" (t2v R@1 {t2v.difference:+.1f} points, 95% CI [{t2v.low:+.1f}, {t2v.high:+.1f}]; v2t R@1 "
                        f"{v2t.difference:+.1f} [{v2t.low:+.1f}, {v2t.high:+.1f}], decided: {v2t.verdict()}; "
                        f"{len(comparison.seeds)} seeds)")
        if comparison.spec.paper:
            claim = comparison.spec.claim
            if comparison.spec.a == BEST_JOINT and comparison.a is not None:
                claim += f" (best joint model: {labels.get(comparison.a, comparison.a)})"
            lines.append(f"- {claim[0].upper()}{claim[1:]}: **{verdict}**{evidence}.")
        else:  # a design choice: say which way the benchmark settles it
            choice = {"supported": f"the benchmark favours {labels.get(comparison.a, comparison.a)}",
                      "contradicted": f"the benchmark favours {labels.get(comparison.b, comparison.b)}"}
            lines.append(f"- Not a claim of the paper but {comparison.spec.lead}: {comparison.spec.claim}: "
                         f"**{verdict}**; {choice.get(verdict, 'the benchmark does not settle it')}{evidence}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------


def rank_mismatches(runs: dict[str, list[dict]], tolerance: float = 1e-6) -> list[str]:
    """Runs whose R@1 from the per-query ranks (rank == 1) differs from the reported R@1: tied scores, which the
    metrics count by their hit probability and the bootstrap as misses."""
    found = []
    for variant, records in runs.items():
        for record in records:
            if "test_ranks" not in record:
                continue
            stage = selected_stage(record["test"])
            for direction in ("t2v", "v2t"):
                ranks = record_ranks(record["test_ranks"], stage, direction)
                from_ranks = 100.0 * float(np.mean(ranks[~np.isnan(ranks)] <= 1))
                reported = record["test"][f"test_{stage}_{direction}_R1"]
                if abs(from_ranks - reported) > tolerance:
                    found.append(f"{variant} seed {record['seed']} {direction}: {from_ranks:.2f} from ranks vs "
                                 f"{reported:.2f} reported")
    return found


def wall_time_lines(runs: dict[str, list[dict]], invocations: dict[str, dict]) -> list[str]:
    """The sum of per-run wall times, and the start-to-end time when one invocation trained every reported run."""
    records = [record for seeds in runs.values() for record in seeds]
    if not records:
        return []
    total = sum(record["wall_seconds"] for record in records)
    lines = [f"- Sum of per-run wall times (each run's own process, start to end; runs overlap when trained with "
             f"`--jobs` above 1): "
             f"{total / 60:.1f} min over {len(records)} runs."]
    trained_by = {record.get("invocation") for record in records}
    only = next(iter(trained_by)) if len(trained_by) == 1 else None
    if only is not None and only in invocations:
        minutes = invocations[only]["wall_seconds"] / 60
        jobs = invocations[only].get("jobs", 1)
        lines.append(f"- Every run was trained in one go (`python -m training.ablation --jobs {jobs}` started {only}): "
                     f"{minutes:.1f} min from its start to its last run's end (the issue allows "
                     f"{TIME_LIMIT_MINUTES} min: {'within' if minutes <= TIME_LIMIT_MINUTES else 'over'}).")
    elif only is not None:
        lines.append(f"- Every run was trained by the invocation started {only}, which recorded no start-to-end time "
                     "(it was interrupted, or its runs were collected by a later one).")
    else:
        lines.append(f"- The runs were trained over {len(trained_by)} invocations, so there is no single "
                     "start-to-end time.")
    lines.append(code_line(trained_by, invocations))
    lines.append(machine_line(records, trained_by, invocations))
    return lines


def machine_line(records: list[dict], trained_by: set, invocations: dict[str, dict]) -> str:
    """The CPUs and training precisions behind the reported runs (bf16 kernels differ by CPU, and
    `cpu_bf16_needs_amx` trains in float32 where the CPU has no AMX)."""
    def counted(values):
        distinct = sorted(set(values), key=str)
        return ", ".join(f"{value} ({values.count(value)})" for value in distinct)

    machines = []
    for invocation in sorted(trained_by, key=str):
        machine = invocations.get(invocation, {}).get("machine")
        if not machine:
            machines.append("not recorded")
        else:
            amx = {True: "with AMX", False: "no AMX", None: "AMX unknown"}[machine.get("amx")]
            machines.append(f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('cpus')} CPUs, {amx}")
    precisions = [record.get("train_precision") or "not recorded" for record in records]
    return (f"- Machine: {counted(machines)} invocation(s). Training precision: {counted(precisions)} run(s).")


def code_line(trained_by: set, invocations: dict[str, dict]) -> str:
    """Which code versions trained the reported runs (the config hash does not cover the code)."""
    versions = []
    for invocation in sorted(trained_by, key=str):
        code = invocations.get(invocation, {}).get("code")
        if not code or not code.get("commit"):
            versions.append("not recorded")
        else:
            modified = " with uncommitted changes to the code" if code.get("modified") else ""
            versions.append(code["commit"][:7] + modified)
    distinct = sorted(set(versions))
    return (f"- Code: {', '.join(f'{version} ({versions.count(version)} invocation(s))' for version in distinct)}. "
            "The config hash does not cover the code: runs of one config made by different code can differ.")


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


def build_report(config: dict, runs: dict[str, list[dict]], command: str, invocations: dict[str, dict] | None = None,
                 ignored: list[str] | None = None, num_replicates: int = 10_000,
                 chart: str | None = "ablation.png") -> str:
    """results/ablation.md's text from the runs found (`runs`: variant -> its runs' results, any seeds)."""
    labels = {name: spec.get("_label", name) for name, spec in config["variants"].items()}
    runs = {variant: sorted(records, key=lambda record: record["seed"]) for variant, records in runs.items() if records}
    selected, embedding = summarise(runs), summarise(runs, stage="embedding")
    comparisons = [compare(runs, spec, num_replicates) for spec in COMPARISONS]
    test_videos = int(config["test_videos"])
    seeds = {variant: [record["seed"] for record in records] for variant, records in runs.items()}
    report = [
        "# Ablation on the built-in synthetic benchmark",
        "",
        f"Command: `{command}` (the report alone: add `--report-only`). Budget per run (the same for every "
        f"method): {config['_budget']}. Test split: {test_videos} videos (chance R@1 = {100 / test_videos:.2f}%). "
        "Mean ± std over each method's seeds; checkpoints selected on validation mean recall; training time is the "
        "Trainer's `train_runtime` (including validation passes). Per-run results: `ablation_runs/` beside this file.",
        "",
        "Seeds per method: " + "; ".join(f"{labels.get(v, v)} {len(s)} ({', '.join(map(str, s))})"
                                         for v, s in seeds.items()) + ".",
    ]
    if selected:
        best = max(selected, key=lambda variant: selected[variant]["t2v_R1"][0])
        mean = selected[best]["t2v_R1"][0]
        report += ["", f"Best method: {labels.get(best, best)}, t2v R@1 {mean:.1f}% (the issue asks for ≥ 20%: "
                       f"{'met' if mean >= 20 else 'not met'})."]
    report += [
        "",
        "## Each method's own retrieval (reranked top-k for joint encoders, embedding-only otherwise)",
        "",
        markdown_table(selected, labels),
        "",
        "## Embedding-only retrieval for every method",
        "",
        markdown_table(embedding, labels),
        "",
    ]
    if chart:
        report += [f"![ablation]({chart})", ""]
    report += [
        "## Comparisons",
        "",
        "Differences A − B in R@1 (percentage points), each method with its own scores, averaged over the seeds both "
        f"methods have; 95% percentile intervals from a paired bootstrap ({num_replicates:,} replicates, each "
        "resampling seeds and test queries with replacement, the same draws for A and B; "
        "`modeling_t2v2t/retrieval/paired_bootstrap.py`). Decided: the interval excludes 0. The best joint model is "
        "picked by its mean test t2v R@1, so that row slightly favours it. A comparison needs ≥ "
        f"{MIN_SHARED_SEEDS} shared seeds.",
        "",
        comparisons_table(comparisons, labels),
        "",
    ]
    mismatches = rank_mismatches(runs)
    if mismatches:
        report += ["Tied scores: in these runs R@1 from the ranks (rank = 1; what the bootstrap counts) differs from "
                   "the reported R@1 (which counts a tie by its hit probability): " + "; ".join(mismatches) + ".", ""]
    report += ["## What the benchmark says about the paper's claims", "", claims_paragraph(comparisons, labels), ""]
    timing = wall_time_lines(runs, invocations or {})
    if timing:
        report += ["## Wall time", "", *timing, ""]
    if ignored:
        report += ["Result files left out (another config, or a variant the config lacks): " + ", ".join(ignored)
                   + ".", ""]
    return "\n".join(report)


__all__ = ["COMPARISONS", "BEST_JOINT", "Comparison", "ComparisonSpec", "bar_chart", "best_joint", "build_report",
           "claim_verdict", "claims_paragraph", "compare", "comparisons_table", "markdown_table", "summarise"]
