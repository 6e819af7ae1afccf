"""training/ablation.py's resume and report logic with a fake trainer (no training): per-run result files keyed by
a config hash, reuse, extension by seeds, rerun on a changed config, `--report-only`, the comparisons' refusals,
the claims paragraph written from the decisions, and `--git-commit`."""

import json
import subprocess

import numpy as np
import pytest

from modeling_t2v2t.retrieval.paired_bootstrap import PairedDifference
from modeling_t2v2t.retrieval.query_ranks import ranks_record
from training import ablation, ablation_report

# Per fusion mode, the probability that a query's own video ranks first: t2v2t clearly beats v2t and the dual
# encoder, "self" and "null" are level.
QUALITY = {"none": 0.1, "v2t": 0.3, "naive_t2v2t": 0.45, ("t2v2t", "self"): 0.8, ("t2v2t", "null"): 0.8}
NUM_VIDEOS, NUM_CAPTIONS = 60, 120
VARIANTS = {
    "dual_encoder": {"_label": "dual encoder", "model_config": {"fusion_mode": "none"}},
    "vindlu": {"_label": "VindLU-style", "model_config": {"fusion_mode": "v2t"}},
    "naive_t2v2t": {"model_config": {"fusion_mode": "naive_t2v2t"}},
    "t2v2t_self": {"_label": "T2V2T (self)", "model_config": {"fusion_mode": "t2v2t", "bypass_mode": "self"}},
    "t2v2t_null": {"model_config": {"fusion_mode": "t2v2t", "bypass_mode": "null"}},
}


def fake_config(seeds=(0, 1, 2), **variants) -> dict:
    return {"_budget": "a fake one", "seeds": list(seeds), "test_videos": NUM_VIDEOS,
            "shared": {"model_config": {"fusion_mode": "t2v2t", "bypass_mode": "self"}, "max_steps": 10},
            "variants": variants or VARIANTS}


def fake_ranks(quality: float, size: int, rng) -> np.ndarray:
    return np.where(rng.random(size) < quality, 1.0, rng.integers(2, 30, size).astype(float))


class FakeTrainer:
    """Stands in for `ablation.launch`: writes what `training.finetune` writes for a run, from its run.json."""

    def __init__(self):
        self.launched = []
        self.threads = []
        self.fail = set()  # (variant, seed) runs that exit with an error

    def __call__(self, run_dir, threads=None):
        run = json.loads((run_dir / "run.json").read_text())
        self.launched.append((run_dir.parent.name, run["seed"]))
        self.threads.append(threads)
        if (run_dir.parent.name, run["seed"]) in self.fail:
            return 1
        mode = run["model_config"]["fusion_mode"]
        quality = QUALITY[(mode, run["model_config"]["bypass_mode"]) if mode == "t2v2t" else mode]
        rng = np.random.default_rng([run["seed"], sum(map(ord, run_dir.parent.name))])  # variant and seed
        stages = ["embedding"] if mode == "none" else ["embedding", "reranked"]
        ranks = {stage: {"t2v": fake_ranks(quality, NUM_CAPTIONS, rng), "v2t": fake_ranks(quality, NUM_VIDEOS, rng)}
                 for stage in stages}
        metrics = {f"test_{stage}_{direction}_{metric}": float(np.mean(values))
                   for stage in stages for direction, values in ranks[stage].items()
                   for metric in ("MdR", "MnR")}
        metrics.update({f"test_{stage}_{direction}_R{k}": 100 * float(np.mean(values <= k))
                        for stage in stages for direction, values in ranks[stage].items() for k in (1, 5, 10)})
        text_to_video = np.arange(NUM_CAPTIONS) % NUM_VIDEOS
        (run_dir / "test_ranks.json").write_text(json.dumps(ranks_record(ranks, text_to_video, NUM_VIDEOS)))
        (run_dir / "test_results.json").write_text(json.dumps(metrics))
        (run_dir / "train_results.json").write_text(json.dumps({"train_runtime": 60.0 + run["seed"],
                                                                "train_precision": "float32"}))
        return 0


@pytest.fixture
def setup(tmp_path, monkeypatch):
    trainer = FakeTrainer()
    monkeypatch.setattr(ablation, "launch", trainer)
    monkeypatch.setattr(ablation, "machine_description", lambda: {"cpu": "Test CPU", "cpus": 2, "amx": False})

    def main(config, *extra):
        (tmp_path / "ablation.json").write_text(json.dumps(config))
        ablation.main(["--config", str(tmp_path / "ablation.json"), "--output-dir", str(tmp_path / "runs"),
                       "--results-dir", str(tmp_path / "results"), "--replicates", "2000", *extra])
        report = tmp_path / "results" / "ablation.md"
        return report.read_text() if report.exists() else None

    return trainer, main, tmp_path / "results"


def test_runs_are_written_reused_and_extended_seed_by_seed(setup):
    trainer, main, results = setup
    config = fake_config()
    report = main(config)
    assert len(trainer.launched) == 5 * 3
    record = json.loads(ablation.result_path(results, "vindlu", 2).read_text())
    assert record["seed"] == 2 and record["label"] == "VindLU-style" and record["train_runtime"] == 62.0
    assert record["train_precision"] == "float32"
    assert record["config_sha256"] == ablation.config_hash(ablation.run_config(config, "vindlu", 2, "elsewhere"))
    assert record["wall_seconds"] > 0 and record["invocation"]
    assert len(record["test_ranks"]["ranks"]["reranked"]["t2v"]) == NUM_CAPTIONS
    assert "caption_video_ids" not in record["test_ranks"]
    assert not (results / "ablation_runs.json").exists()
    assert "| VindLU-style | reranked | 3 |" in report and "| dual encoder | embedding | 3 |" in report
    assert "Every run was trained in one go (`python -m training.ablation --jobs 1`" in report
    assert "(the issue allows 150 min: within)" in report
    assert trainer.threads == [None] * 15  # one run at a time: each run sets its own threads
    assert "Sum of per-run wall times" in report

    trainer.launched.clear()
    assert main(config) == report and trainer.launched == []  # nothing new to train: the same report

    main(config, "--seeds", "3", "--variants", "vindlu,t2v2t_self")  # a later session adds a seed to two methods
    assert trainer.launched == [("vindlu", 3), ("t2v2t_self", 3)]
    report = main(config, "--report-only")
    assert "| VindLU-style | reranked | 4 |" in report and "| T2V2T (self) | reranked | 4 |" in report
    assert "| T2V2T (bypass self) vs VindLU-style | T2V2T (self) | VindLU-style |" in report
    assert "no single start-to-end time" in report  # two invocations trained these runs
    invocations = json.loads((results / "ablation_runs" / "invocations.json").read_text())
    assert len(invocations) == 2 and sorted(len(entry["trained"]) for entry in invocations.values()) == [2, 15]
    # Each invocation records the code version it ran (the config hash does not cover the code); the report says it.
    head = ablation.code_version()["commit"]
    assert head and all(entry["code"]["commit"] == head for entry in invocations.values())
    assert f"- Code: {head[:7]}" in report and "(2 invocation(s))" in report
    # ... and the machine (bf16 kernels and speed differ by CPU), and each run its training precision.
    assert all(entry["machine"] == {"cpu": "Test CPU", "cpus": 2, "amx": False} for entry in invocations.values())
    assert ("- Machine: Test CPU, 2 CPUs, no AMX (2) invocation(s). Training precision: float32 (17) run(s)."
            in report)


def test_machine_description_names_this_cpu():
    machine = ablation.machine_description()
    assert set(machine) == {"cpu", "cpus", "amx"} and machine["cpus"] >= 1 and machine["amx"] in (True, False, None)


def test_a_changed_config_reruns_and_replaces_the_result(setup, caplog):
    trainer, main, results = setup
    config = fake_config(seeds=(0, 1), dual_encoder=VARIANTS["dual_encoder"], vindlu=VARIANTS["vindlu"])
    main(config)
    old = json.loads(ablation.result_path(results, "vindlu", 0).read_text())["config_sha256"]
    trainer.launched.clear()
    config["variants"]["vindlu"]["max_steps"] = 20  # only this variant's runs change
    with caplog.at_level("WARNING", logger="ablation"):
        main(config)
    assert trainer.launched == [("vindlu", 0), ("vindlu", 1)]
    new = json.loads(ablation.result_path(results, "vindlu", 0).read_text())["config_sha256"]
    assert new != old and "Replaced" in caplog.text and "seed0.json" in caplog.text
    # a finished run folder of the current config is collected rather than trained again
    ablation.result_path(results, "dual_encoder", 1).unlink()
    trainer.launched.clear()
    main(config, "--runs-only")
    assert trainer.launched == [] and ablation.result_path(results, "dual_encoder", 1).exists()


def test_a_folder_the_ablation_did_not_make_is_left_alone(setup):
    trainer, main, results = setup
    foreign = results.parent / "runs" / "vindlu" / "seed0"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="holds no run.json: not an ablation run folder"):
        main(fake_config(seeds=(0,), vindlu=VARIANTS["vindlu"]))
    assert (foreign / "notes.txt").read_text() == "mine"


def test_report_only_uses_the_committed_runs_and_refuses_comparisons_without_two_shared_seeds(setup):
    trainer, main, results = setup
    config = fake_config(seeds=(0, 1, 2))
    main(config, "--runs-only")
    assert not (results / "ablation.md").exists()
    for seed in (1, 2):
        ablation.result_path(results, "vindlu", seed).unlink()
    stale = ablation.result_path(results, "t2v2t_null", 0)
    stale.write_text(stale.read_text().replace('"config_sha256": "', '"config_sha256": "0'))
    trainer.launched.clear()
    report = main(config, "--report-only")
    assert trainer.launched == []
    assert "| VindLU-style | reranked | 1 |" in report and "| t2v2t_null | reranked | 2 |" in report
    assert "Seeds per method: dual encoder 3 (0, 1, 2); VindLU-style 1 (0);" in report
    assert "not computed: t2v2t_self and vindlu share 1 seed(s); a comparison needs ≥ 2" in report
    fusion_claim = ablation_report.COMPARISONS[0].claim
    assert f"{fusion_claim}: **not tested" in report
    assert "t2v2t_null/seed0.json (another config)" in report


def test_comparisons_decide_the_clear_differences_and_the_claims_follow(setup):
    trainer, main, results = setup
    report = main(fake_config(seeds=(0, 1, 2, 3, 4)))
    runs, _ = ablation.load_runs(fake_config(seeds=(0, 1, 2, 3, 4)), results)
    comparisons = {c.spec.title: c for c in (ablation_report.compare(runs, spec, 2000)
                                             for spec in ablation_report.COMPARISONS)}
    fusion = comparisons["T2V2T (bypass self) vs VindLU-style"]
    assert fusion.t2v.decided and fusion.t2v.better == "A" and fusion.seeds == [0, 1, 2, 3, 4]
    assert fusion.t2v.num_queries == NUM_CAPTIONS and fusion.v2t.num_queries == NUM_VIDEOS
    observed = np.mean([json.loads(ablation.result_path(results, v, s).read_text())["test"]["test_reranked_t2v_R1"]
                        for v in ("t2v2t_self",) for s in range(5)]) - np.mean(
        [json.loads(ablation.result_path(results, "vindlu", s).read_text())["test"]["test_reranked_t2v_R1"]
         for s in range(5)])
    assert fusion.t2v.difference == pytest.approx(observed)  # the difference of the reported means
    best = comparisons["best joint model vs dual encoder"]
    assert best.a in ("t2v2t_self", "t2v2t_null") and best.t2v.better == "A"
    assert not comparisons["bypass self vs null"].t2v.decided  # the same quality: noise only
    assert "| T2V2T (bypass self) vs VindLU-style | T2V2T (self) | VindLU-style | +" in report
    assert f"{ablation_report.COMPARISONS[0].claim}: **supported**" in report
    assert (f"{ablation_report.COMPARISONS[2].claim}: **not decided**; the benchmark does not settle it"
            in report)
    assert "Tied scores" not in report  # the fake's R@1 is its ranks' R@1
    # the hash of the caption order pairs runs: a run on other queries is refused
    path = ablation.result_path(results, "dual_encoder", 0)
    path.write_text(path.read_text().replace('"caption_order_sha256": "', '"caption_order_sha256": "x'))
    runs, _ = ablation.load_runs(fake_config(seeds=(0, 1, 2, 3, 4)), results)
    refused = ablation_report.compare(runs, ablation_report.COMPARISONS[3], 200)
    assert refused.t2v is None and "different test queries" in refused.reason
    del runs["vindlu"][0]["test_ranks"]["ranks"]["reranked"]  # a malformed result: the row says so
    broken = ablation_report.compare(runs, ablation_report.COMPARISONS[0], 200)
    assert broken.t2v is None and "unusable ranks" in broken.reason and "no 'reranked' ranks" in broken.reason


def difference(low: float, high: float) -> PairedDifference:
    better = "A" if low > 0 else "B" if high < 0 else None
    return PairedDifference((low + high) / 2, low, high, 0.95, 1000, 5, 100, better is not None, better)


@pytest.mark.parametrize("low, high, verdict", [(1.0, 3.0, "supported"), (-3.0, -1.0, "contradicted"),
                                                (-1.0, 2.0, "not decided")])
def test_the_claims_paragraph_is_written_from_the_decisions(low, high, verdict):
    labels = {"t2v2t_self": "T2V2T", "vindlu": "VindLU", "t2v2t_null": "null", "xpool": "X-Pool",
              "dual_encoder": "dual"}
    paper, design, xpool = (ablation_report.COMPARISONS[i] for i in (0, 2, 4))
    made = [ablation_report.Comparison(spec, spec.a, spec.b, [0, 1, 2], difference(low, high), difference(-5, 5))
            for spec in (paper, design, xpool)]
    missing = ablation_report.Comparison(ablation_report.COMPARISONS[3], None, "dual_encoder",
                                         reason="no runs of a joint model")
    text = ablation_report.claims_paragraph([*made, missing], labels)
    assert f"{paper.claim}: **{verdict}** (t2v R@1 {(low + high) / 2:+.1f} points" in text
    favoured = {"supported": "the benchmark favours T2V2T", "contradicted": "the benchmark favours null",
                "not decided": "the benchmark does not settle it"}[verdict]
    assert f"this implementation's default: {design.claim}: **{verdict}**; {favoured}" in text
    favoured = {"supported": "the benchmark favours X-Pool", "contradicted": "the benchmark favours dual",
                "not decided": "the benchmark does not settle it"}[verdict]
    assert (f"Not a claim of the paper but X-Pool's from-scratch recipe (no pooling dropout, pooling at lr 1e-5): "
            f"{xpool.claim}: **{verdict}**; {favoured}") in text
    assert "**not tested (no runs of a joint model)**" in text


def test_git_commit_commits_each_result_file_only(setup, tmp_path):
    trainer, main, results = setup
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for key, value in (("user.name", "test"), ("user.email", "test@example.com")):
        subprocess.run(["git", "-C", str(tmp_path), "config", key, value], check=True)
    (tmp_path / "staged.txt").write_text("someone else's work")
    subprocess.run(["git", "-C", str(tmp_path), "add", "staged.txt"], check=True)
    main(fake_config(seeds=(0,), vindlu=VARIANTS["vindlu"]), "--git-commit", "--runs-only")
    log = subprocess.run(["git", "-C", str(tmp_path), "log", "--format=%s", "--name-only"], capture_output=True,
                         text=True, check=True).stdout
    assert "ablation: vindlu seed 0" in log and "results/ablation_runs/vindlu/seed0.json" in log
    assert "results/ablation_runs/invocations.json" in log and "staged.txt" not in log
    status = subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain"], capture_output=True, text=True,
                            check=True).stdout
    assert "A  staged.txt" in status  # still staged, not committed


def test_jobs_train_runs_side_by_side_with_the_cores_split_and_a_failure_stops_no_other_run(setup, monkeypatch):
    trainer, main, results = setup
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(ablation.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    trainer.fail = {("vindlu", 1)}
    config = fake_config(seeds=(0, 1, 2))
    with pytest.raises(RuntimeError, match=r"1 of 15 runs failed \(vindlu/seed1\)"):
        main(config, "--jobs", "2")
    assert sorted(trainer.launched) == sorted((variant, seed) for variant in VARIANTS for seed in (0, 1, 2))
    assert trainer.threads == [1] * 15  # 2 usable CPUs, 2 runs at a time
    assert not ablation.result_path(results, "vindlu", 1).exists()
    assert all(ablation.result_path(results, variant, seed).exists()
               for variant in VARIANTS for seed in (0, 1, 2) if (variant, seed) != ("vindlu", 1))
    (invocation,) = json.loads((results / "ablation_runs" / "invocations.json").read_text()).values()
    assert invocation["jobs"] == 2 and len(invocation["trained"]) == 14

    trainer.fail, trainer.launched = set(), []
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's thread count is kept, not split
    report = main(config, "--jobs", "2")
    assert trainer.launched == [("vindlu", 1)] and trainer.threads[-1] is None
    assert "| VindLU-style | reranked | 3 |" in report
    assert "no single start-to-end time" in report  # the failed run was trained by a second invocation


def test_jobs_must_be_positive(setup):
    _, main, _ = setup
    with pytest.raises(SystemExit):
        main(fake_config(), "--jobs", "0")
