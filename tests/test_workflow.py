"""The Snakemake DAG, MLflow and DVC for real, on the smoke configuration in a temporary copy."""

import json
import subprocess
import time

import pytest
import yaml

from divdistill.experiment import config as dd
from divdistill.experiment import grid, jobsets, methods

from .conftest import ROOT, needs_fashion, planned_jobs, run, use_config

pytestmark = pytest.mark.workflow  # Snakemake in a subprocess: not in make test-fast


@pytest.mark.parametrize("name", ["params", "smoke"])
def test_dry_run_has_one_evaluation_job_per_grid_cell(project, name):
    cfg = dd.load(ROOT / "params.yaml") if name == "params" else use_config(project, name)
    jobs = planned_jobs(run(["snakemake", "-n", "all"], project).stdout)
    # one_job_per: cell (demo, smoke) runs every seed of a (dataset, method, ipc, model, distill_seed) cell in
    # one job; each seed still writes its own result and MLflow run
    assert cfg["evaluate"]["one_job_per"] == "cell"
    per_cell = {(c.dataset, c.method, c.ipc, c.model, c.distill_seed, c.protocol) for c in grid.cells(cfg)}
    assert jobs["evaluate"] == sum(k[1] != "full" for k in per_cell)
    assert jobs["evaluate_full"] == sum(k[1] == "full" for k in per_cell)  # Full's own rule (evaluate.seeds_full)
    expected = sum(len(t["methods"]) * len(t["models"]) * len(grid.protocols_of(cfg, name))
                   for name, t in cfg["tables"].items())
    expected += sum(1 for *_, m in grid.sweep_points(cfg) if m != cfg["sweeps"]["method"])  # Figure 4's variants
    assert expected > 0 and len(grid.cells(cfg)) <= expected * len(cfg["ipc"]) * len(cfg["seeds"])
    # the jobs that make the evaluated sets, as experiment/jobsets.py lists them (benchmarks/cost.py counts these)
    assert {rule: len(keys) for rule, keys in jobsets.upstream_jobs(cfg).items()} == \
        {rule: jobs.get(rule, 0) for rule in jobsets.upstream_jobs(cfg)}


def test_a_fresh_clone_runs_the_demo(tmp_path):
    """Nothing the DAG writes is committed (the demo's snapshot lives in docs/demo/), so a clone's
    first `snakemake all` plans the whole demo instead of finding its outputs present."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    assert subprocess.run(["git", "ls-files", "reports", "results"], cwd=clone, capture_output=True,
                          text=True).stdout == ""
    jobs = planned_jobs(run(["snakemake", "-n", "all"], clone).stdout)
    readme = (ROOT / "README.md").read_text()
    assert f"({jobs['total']}\njobs, " in readme or f"({jobs['total']} jobs, " in readme  # the README's count
    assert jobs["evaluate"] > 0 and jobs["render"] == 1 and jobs["pretrain_dit"] == 1


def test_lint_is_clean(project):
    out = run(["snakemake", "--lint"], project).stdout
    assert "Lints for" not in out


BAD = {
    "wrong type": (("evaluate", "batch_size"), "sixty", "batch_size"),
    "unknown key": (("evaluate", "lrr"), 0.1, "lrr"),
    "unknown method": (("tables", "table1", "methods"), ["random", "fulll"], "fulll"),
    "ipc too large": (("ipc",), [10, 5000], "ipc[1] = 5000"),
    # no schema bound rejects nan: once, a nan guidance sampled black images that evaluated as 21 %
    "nan guidance": (("sample", "guidance"), float("nan"), "sample.guidance = nan: must be a finite number"),
    "inf weight": (("finetune", "lambda_gen"), float("inf"), "finetune.lambda_gen = inf: must be a finite number"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_params_fail_fast_naming_the_key(project, case):
    keys, value, needle = BAD[case]
    cfg = dd.load(project / "params.yaml")
    node = cfg
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    (project / "params.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    p = run(["snakemake", "--cores", "2", "all"], project, check=False)
    assert p.returncode != 0
    assert needle in p.stdout + p.stderr
    assert time.monotonic() - t0 < 30
    assert not (project / "results").exists() and not (project / "mlflow.db").exists()


@needs_fashion
@pytest.mark.slow
def test_dvc_repro_and_experiment_rerun_only_evaluations(project):
    # the selection slice of the smoke grid is enough to see which jobs DVC + Snakemake re-run
    cfg = use_config(project, "smoke")
    cfg["tables"] = {"table1": {"datasets": ["fashion-hard"], "methods": ["random", "full"], "models": ["convnet"]}}
    (project / "params.yaml").write_text(yaml.safe_dump(cfg))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
                ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dvc"]):
        run(cmd, project)
    run(["dvc", "repro"], project)
    assert "didn't change" in run(["dvc", "repro"], project).stdout

    history = project / "results" / "history"  # every finished output's copy: it grows, by design
    results = [p for p in sorted((project / "results").rglob("*.json")) + sorted((project / "results").rglob("*.safetensors"))
               if history not in p.parents]
    mtimes = {p: p.stat().st_mtime_ns for p in results}
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock"], project)
    run(["dvc", "exp", "run", "-S", "evaluate.epochs_full=3"], project)
    changed = {p.relative_to(project).as_posix() for p, m in mtimes.items() if p.stat().st_mtime_ns != m}
    assert grid.PARENTS in changed  # the table cells' MLflow runs follow their new numbers
    assert grid.EVIDENCE in changed  # and the render's record of what the tables were made from
    changed -= {grid.PARENTS, grid.EVIDENCE}
    assert changed and all(p.startswith("results/eval/") and "/full/" in p for p in changed)
    assert len(changed) == sum(1 for c in grid.cells(dd.load(project / "params.yaml")) if c.method == "full")

    shown = run(["dvc", "metrics", "show"], project).stdout
    assert "table1" in shown and "random" in shown
    # the experiment against the committed tables: only Full's cells moved
    diff = run(["dvc", "metrics", "diff", "--json"], project).stdout
    moved = {k.split(".")[2] for k in json.loads(diff)["reports/metrics.json"]}
    assert moved == {"full"}, diff
    # the curves and Figure 4's sweep points as DVC plots, every file readable (.dvcignore skips
    # Snakemake's timestamp files in the directory outputs)
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    assert not plots.get("errors"), plots["errors"]
    assert {k.split("/")[2] for k in plots["data"]} == {"curves", "sweeps"}


def test_study_dry_run_lists_every_point(project):
    """config/study.yaml over params.yaml: one fine-tuning per (method, length, distillation seed), one
    sampling, diversity and evaluation job per point and distillation seed; the demo's grid unchanged."""
    cfg = {**dd.load(project / "params.yaml"), **dd.load(project / "config" / "study.yaml")}
    st = cfg["study"]
    jobs = planned_jobs(run(["snakemake", "-n", "--configfile", "config/study.yaml", "--", "study"],
                            project).stdout)
    tuned = [m for m in st["methods"] if methods.get(m).finetuned]
    sets = len(st["guidance"]) * (1 + len(tuned) * len(st["max_steps"]) * len(st["distill_seeds"]))
    assert jobs["finetune"] == len(tuned) * len(st["max_steps"]) * len(st["distill_seeds"])
    assert jobs["sample"] == jobs["diversity"] == sets and jobs["evaluate"] == sets * len(cfg["ipc"])
    assert jobs["render_study"] == 1 and "render" not in jobs
