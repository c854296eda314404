"""The smoke DAG run once for real (Snakemake with 8 jobs at a time on 2 cores, MLflow), and the tests
that build on that run: every run tracked, a rerun beside a failing job against the same database,
the mechanism study on top. One file, so that make test's workers (pytest-xdist, --dist loadfile)
run the fixture once."""

import csv
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from divdistill.experiment import config as dd
from divdistill.experiment import grid, methods, names

from .conftest import copy_project, needs_fashion, run, use_config

pytestmark = [needs_fashion, pytest.mark.slow, pytest.mark.workflow]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke DAG run once with 8 jobs at a time (on 2 cores: every stage's runs overlap); the
    tests below share it, in file order."""
    project = copy_project(tmp_path_factory.mktemp("smoke"))
    cfg = use_config(project, "smoke")
    p = run(["snakemake", "--cores", "8", "all"], project)
    return project, cfg, p.stdout + p.stderr


def test_smoke_dag_with_8_cores_tracks_every_run(smoke):
    project, cfg, _ = smoke
    cells = grid.cells(cfg)
    for table in cfg["tables"]:
        md = (project / "reports" / "tables" / f"{table}.md").read_text()
        assert "±" in md and (project / "reports" / "tables" / f"{table}.tex").exists()
        assert (project / "reports" / "tables" / f"{table}.html").exists()
    # Figure 4 from the sweep variant's runs, Figure 1 from the generative sets
    for name in ("figure4.png", "figure4.pdf", "figure1.png", "figure1.pdf"):
        assert (project / "reports" / "figures" / name).stat().st_size > 1000
    assert any(c.method == "ours-lambda_gen-0.002" for c in cells)
    # DVC's sweep plots hold Figure 4's points: the seed mean of each variant's final-epoch accuracy
    with open(project / "reports" / "plots" / "sweeps" / f"lambda_gen-ipc{cfg['ipc'][0]}.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["value"]) for r in rows] == cfg["sweeps"]["lambda_gen"]
    for r in rows:
        method = "ours" if float(r["value"]) == cfg["finetune"]["lambda_gen"] else f"ours-lambda_gen-{r['value']}"
        accs = [json.loads((project / c.path).read_text())["test_acc"] for c in cells
                if c.method == method and c.ipc == cfg["ipc"][0] and c.dataset == cfg["sweeps"]["dataset"]
                and c.protocol == "hard"]
        assert len(accs) == int(r["seeds"]) == len(cfg["seeds"])
        assert abs(float(r["test_acc"]) - 100 * sum(accs) / len(accs)) < 1e-3
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert set(metrics) == set(cfg["tables"]) | {"comparisons", "robust"}
    # the DiT's pretraining took the VAE job's posterior of its training images instead of encoding them
    assert "posterior read from results/pretrained/vae/train_latents.safetensors" in \
        (project / "results" / "logs" / "pretrain" / "dit.log").read_text()
    # the paired comparisons: Ours - Minimax on Table 1's rows, with an interval and an MDD (2 seeds)
    ours_minimax = metrics["comparisons"]["table1"]["fashion-hard"]["ours-vs-minimax"]
    assert set(ours_minimax) == {f"ipc{i}" for i in cfg["ipc"]}
    assert all(v["convnet"][p]["n"] == len(cfg["seeds"]) for v in ours_minimax.values()
               for p in grid.protocols_of(cfg, "table1"))
    assert "Ours − Minimax" in (project / "reports" / "tables" / "comparisons.md").read_text()
    # every protocol of Table 1 is a row group; one teacher for the soft ones, its accuracy in the notes
    table1 = (project / "reports" / "tables" / "table1.md").read_text()
    assert all(f"| {p} | fashion-hard |" in table1 for p in grid.protocols_of(cfg, "table1"))
    teacher = json.loads((project / grid.TEACHER_RESULT.format(dataset="fashion-hard", model="convnet")).read_text())
    assert f"fashion-hard / ConvNet {100 * teacher['test_acc']:.1f}%" in table1
    # the robust scores: LRS and both ARS for every method but Full (Random: LRS only), one value per seed
    robust = metrics["robust"]["table1"]["fashion-hard"]
    assert set(robust) == {"lrs", "ars-hard", "ars-soft"}
    for score, methods_ in robust.items():
        expected = {m for m in cfg["tables"]["table1"]["methods"] if m != "full" and (m != "random" or score == "lrs")}
        assert {m for m in methods_ if "-vs-" not in m} == expected
        assert all(0 <= v["convnet"]["mean"] <= 1 and v["convnet"]["n"] == len(cfg["seeds"])
                   for m, by_ipc in methods_.items() if "-vs-" not in m for v in by_ipc.values())
    assert "ours-vs-minimax" in robust["lrs"] and "LRS" in (project / "reports/tables/robust.md").read_text()

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    prefix = cfg["mlflow"]["experiment_prefix"]
    exp = client.get_experiment_by_name(f"{prefix}-evaluate")
    all_runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert all(r.info.status == "FINISHED" for r in all_runs)
    # the render job's parent runs (one per table cell) group the seed runs in the UI
    parents = [r for r in all_runs if r.data.tags.get("divdistill.parent") == "1"]
    runs = [r for r in all_runs if r.data.tags.get("divdistill.parent") != "1"]
    assert len(runs) == len(cells) + len(grid.teachers(cfg))  # one run per job and teacher, none lost or doubled
    runs = [r for r in runs if r.data.tags.get("role") != "teacher"]
    keys = {(c.dataset, c.method, c.ipc, c.model, c.protocol) for c in cells}
    parent_of = {tuple(p.data.tags[k] for k in ("dataset", "method", "ipc", "model", "protocol")): p.info.run_id
                 for p in parents}
    assert len(parents) == len(parent_of) == len(keys)
    # Ours' table-cell run carries its paired comparisons (vs_<other>_diff / _ci_low / _ci_high / _mdd)
    ours = parent_of[("fashion-hard", "ours", str(cfg["ipc"][0]), "convnet", "hard")]
    ours_metrics = next(p for p in parents if p.info.run_id == ours).data.metrics
    assert {"vs_minimax_diff", "vs_minimax_ci_low", "vs_minimax_mdd", "vs_dit_diff", "vs_random_diff"} <= set(ours_metrics)
    assert {"lrs_mean", "lrs_ci_low", "ars_soft_mean", "ars_hard_mean"} <= set(ours_metrics)
    by_id = {r.info.run_id: r for r in runs}
    for c in cells:
        res = json.loads((project / c.path).read_text())
        r = by_id[res["run_id"]]
        # MLflow holds the ipc as text ("2", "all")
        assert r.data.tags["mlflow.parentRunId"] == parent_of[(c.dataset, c.method, grid.ipc_label(c.ipc), c.model,
                                                                c.protocol)]
        assert tuple(r.data.params[k] for k in ("dataset", "method", "ipc", "distill_seed", "seed", "protocol")) == (
            c.dataset, c.method, grid.ipc_label(c.ipc), str(c.distill_seed), str(c.seed), c.protocol)
        assert len(client.get_metric_history(r.info.run_id, "train_loss")) == res["params"]["epochs"]
    # the generator's jobs: one run each, in their own experiments, with the losses logged separately
    finetunes = {(c.dataset, c.method, c.distill_seed) for c in cells if methods.get(names.base_method(c.method)).finetuned}
    # one sampling job per (dataset, method, distillation seed) draws every seed's set; a k-means sampler's
    # (MGD³, D⁴M) one per IPC too
    samples = {(c.dataset, c.method, c.distill_seed, c.ipc if methods.get(names.base_method(c.method)).per_ipc else 0)
               for c in cells if methods.get(names.base_method(c.method)).kind == "generative"}
    for stage, expected in (("pretrain", 2), ("finetune", len(finetunes)), ("sample", len(samples))):
        stage_runs = client.search_runs([client.get_experiment_by_name(f"{prefix}-{stage}").experiment_id])
        assert len(stage_runs) == expected and all(r.info.status == "FINISHED" for r in stage_runs)
        if stage == "finetune":
            for r in stage_runs:
                assert {"loss_diff", "loss_real", "loss_gen", "sim_real", "sim_gen"} <= set(r.data.metrics)
    default = client.get_experiment_by_name("Default")
    assert default is None or not client.search_runs([default.experiment_id])

    # nothing left to do; a recomputed result is identical (same seed, same numbers)
    assert "Nothing to be done" in run(["snakemake", "-n", "all"], project).stdout
    victim = project / cells[0].path
    before = json.loads(victim.read_text())
    victim.unlink()
    run(["snakemake", "--cores", "2", cells[0].path], project)
    after = json.loads(victim.read_text())
    assert after["test_acc"] == before["test_acc"] and after["curve"] == before["curve"]
    assert after["run_id"] != before["run_id"]

    # the browsable report: one self-contained page (styles, scripts and results inlined)
    run(["snakemake", "--report", "reports/report.html"], project)
    page = (project / "reports" / "report.html").read_text()
    assert not re.search(r"<(script|link)\b[^>]*\b(src|href)=[\"']?https?:|url\([\"']?https?:", page)
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("report.html written but not opened: chromium missing (apt-get install -y chromium; CI has it)")
    screenshot = str(project / "workflow" / "scripts" / "screenshot.sh")
    dom = run([screenshot, "reports/report.html", "--dump-dom"], project).stdout
    text = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)  # what the page shows, not its data
    for shown in ("<span>Tables</span>", "<span>Figures</span>", "<span>Samples</span>",  # the menu's categories
                  "How to read it", "final-epoch", "paired t-test",  # workflow/report/workflow.rst
                  "table1.html", "table2.html", "table3.html", "diversity.md", "comparisons.html",
                  "figure1.png", "figure4.png",
                  "samples-fashion-hard-ours.png"):
        assert shown in text, shown
    run([screenshot, "reports/report.html", "reports/report.png"], project)
    png = (project / "reports" / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_the_cost_table_is_the_sum_of_the_jobs_benchmark_records(smoke):
    """reports/cost.json against the benchmark files summed here by their folders (the smoke's jobs all
    run on one thread): each table method's select, synthesize, sample and own fine-tuning records."""
    project, cfg, _ = smoke
    cost = json.loads((project / "reports/cost.json").read_text())
    bench = project / "results/benchmarks"

    def summed(paths):
        return sum(float(p.read_text().splitlines()[1].split("\t")[0]) for p in paths)

    for method, per_d in cost["methods"].items():
        m = methods.get(method)
        for d, c in per_d.items():
            paths = {"selection": lambda: [bench / f"select/{d}/{method}.tsv"],
                     "synthesis": lambda: sorted((bench / f"synthesize/{d}/{method}").rglob("*.tsv")),
                     "generative": lambda: sorted((bench / f"sample/{d}/{method}").rglob("*.tsv"))
                     + (sorted((bench / f"finetune/{d}/{method}").rglob("*.tsv")) if m.finetuned else [])}[m.kind]()
            assert len(paths) == c["jobs"] and abs(summed(paths) - c["core_seconds"]) < 0.02, (method, d)
    assert {"mgd3", "d4m", "dm", "ours"} <= set(cost["methods"])
    assert (project / "reports/tables/cost.md").read_text().startswith("# What each distilled set costs")
    assert (project / "reports/figures/cost.png").stat().st_size > 1000


def test_three_runs_against_one_database_no_lock_no_duplicate_no_running(smoke):
    """The smoke DAG three times in a row against one mlflow.db, 8 jobs at a time: the first run (the
    fixture); every evaluation forced again beside a fine-tuning variant whose loss overflows
    (lambda_gen 1e39); the variant dropped, the run completed (the parent runs and tables of the new
    evaluations). Each job's run is there exactly once per execution, in its stage's experiment; the
    failed job's run is FAILED; nothing is left RUNNING; no job hit a locked database; the table cells'
    parent runs are not duplicated."""
    project, cfg, first_log = smoke
    cells = grid.cells(cfg)
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    prefix = cfg["mlflow"]["experiment_prefix"]
    exps = {e.name: e.experiment_id for e in client.search_experiments()}

    def runs(stage):
        return client.search_runs([exps[f"{prefix}-{stage}"]], max_results=5000)

    def cell_of(r):
        p = r.data.params
        return grid.Cell(p["dataset"], p["method"], grid.parse_ipc(p["ipc"]), p["model"], int(p["distill_seed"]),
                         int(p["seed"]), p["protocol"])

    def seed_runs():
        return [r for r in runs("evaluate") if r.data.tags.get("divdistill.parent") != "1"
                and r.data.tags.get("role") != "teacher"]

    before = {c: 0 for c in cells}
    for r in seed_runs():
        before[cell_of(r)] += 1
    assert all(n >= 1 for n in before.values())
    finetunes_before = len(runs("finetune"))

    tables = sorted(p for p in (project / "reports" / "tables").iterdir()
                    if p.suffix in (".md", ".tex") and p.stem not in ("cost", "diversity"))  # cost: timings
    rendered, written = {p.name: p.read_bytes() for p in tables}, {p.name: p.stat().st_mtime_ns for p in tables}
    assert {"table1.md", "table1.tex", "comparisons.md"} <= set(rendered)
    logs = [first_log]
    good = (project / "params.yaml").read_text()
    bad = dd.load(project / "params.yaml")
    bad["sweeps"]["lambda_gen"] = [*bad["sweeps"]["lambda_gen"], 1e39]  # float32 overflow: inf loss
    (project / "params.yaml").write_text(yaml.safe_dump(bad))
    second = run(["snakemake", "--cores", "8", "--keep-going", "--forcerun", "evaluate", "evaluate_full", "--", "all"],
                 project, check=False)
    logs.append(second.stdout + second.stderr)
    assert second.returncode != 0 and "finetune" in second.stderr  # the variant's fine-tuning failed ...
    (project / "params.yaml").write_text(good)
    third = run(["snakemake", "--cores", "8", "--", "all"], project)  # ... the parents and tables follow
    logs.append(third.stdout + third.stderr)
    assert "rule parents:" in third.stderr
    assert cells[0].path.startswith("results/eval/")  # ... and every other job went on (--keep-going)

    logs += [p.read_text(errors="replace") for p in (project / "results" / "logs").rglob("*.log")]
    assert not any("database is locked" in text for text in logs)
    # every evaluation ran once more, each execution logged once: one new run per cell, no more
    after = {c: 0 for c in cells}
    for r in seed_runs():
        cell = cell_of(r)
        assert "1e+39" not in cell.method  # the failed variant's evaluations never started
        after[cell] += 1
    assert {c: after[c] - before[c] for c in cells} == {c: 1 for c in cells}
    # every evaluation computed again, same seeds: the tables are the first run's, byte for byte
    assert all(p.stat().st_mtime_ns > written[p.name] for p in tables)  # rendered again from the new results
    assert {p.name: p.read_bytes() for p in tables} == rendered
    # one failed fine-tuning run, ended FAILED; no run of any stage left RUNNING
    finetunes = runs("finetune")
    assert len(finetunes) == finetunes_before + 1
    failed = [r for r in finetunes if r.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.params["method"] == "ours-lambda_gen-1e+39"
    for name, exp_id in exps.items():
        statuses = {r.info.status for r in client.search_runs([exp_id], max_results=5000)}
        assert statuses <= {"FINISHED", "FAILED"}, (name, statuses)
        assert "FAILED" not in statuses or name == f"{prefix}-finetune", name
    # the third run's parents job re-used the table cells' parent runs: one per cell, still
    parents = [r for r in runs("evaluate") if r.data.tags.get("divdistill.parent") == "1"]
    assert len(parents) == len({(c.dataset, c.method, c.ipc, c.model, c.protocol) for c in cells})


def test_study_on_the_smoke_dag(smoke):
    """The study target on the finished smoke DAG: the control, a guidance-1 variant sampled from the
    same fine-tuned model, k-NN measures in MLflow, contrasts with intervals and MDDs; the smoke's own
    runs at its own settings are reused, not rerun."""
    project, cfg, _ = smoke
    ipc = str(cfg["ipc"][0])
    study = {"study": {"dataset": "fashion-hard", "model": "convnet", "methods": ["dit", "difffit", "ours"],
                       "max_steps": [cfg["finetune"]["max_steps"]], "guidance": [1, cfg["sample"]["guidance"]],
                       "distill_seeds": [0, 1]}}
    (project / "study.yaml").write_text(yaml.safe_dump(study))
    shared = project / f"results/eval/fashion-hard/ours/ipc{ipc}/convnet/hard/distill0-seed0.json"
    before = json.loads(shared.read_text())["run_id"]
    out = run(["snakemake", "--cores", "2", "--configfile", "study.yaml", "--", "study"], project)
    assert json.loads(shared.read_text())["run_id"] == before  # the smoke's "ours" is the study's point
    assert "rule finetune:" in out.stdout + out.stderr
    # guidance 1 samples the same fine-tuned model as "ours" (one fine-tuning per model), other images
    from divdistill.io import load_tensors

    g1, meta = load_tensors(project / "results/distilled/fashion-hard/ours-guidance-1/distill1-seed0.safetensors")
    g2, _ = load_tensors(project / "results/distilled/fashion-hard/ours/distill1-seed0.safetensors")
    assert meta["generator"] == "results/finetuned/fashion-hard/ours/distill1" and meta["guidance"] == 1.0
    assert not torch.equal(g1["images"], g2["images"])
    assert not (project / "results/finetuned/fashion-hard/ours-guidance-1").exists()

    res = json.loads((project / "reports/study/metrics.json").read_text())
    kinds = {r["kind"] for r in res["contrasts"]}
    assert {"fine-tuning itself", "memory", "guidance"} <= kinds
    memory = next(r for r in res["contrasts"] if r["kind"] == "memory" and r["ipc"] == ipc)
    assert (memory["a"], memory["b"]) == ("ours", "difffit")
    acc = memory["test_acc"]
    assert acc["pairing"] == "(distill_seed, seed)" and acc["n"] == 2 * len(cfg["seeds"])
    # the difference is the mean of the paired per-run differences, recomputed from the result files
    diffs = [json.loads((project / f"results/eval/fashion-hard/{a}/ipc{ipc}/convnet/hard/distill{ds}-seed{s}.json")
                        .read_text())["test_acc"] * sign
             for ds in (0, 1) for s in cfg["seeds"] for a, sign in (("ours", 1), ("difffit", -1))]
    assert abs(acc["mean"] - sum(diffs) / (2 * len(cfg["seeds"]))) < 1e-9
    # (smoke-sized nets may tie on every run: then the interval is a point and the MDD 0)
    assert acc["ci_low"] <= acc["mean"] <= acc["ci_high"] and acc["mdd"] >= 0
    md = (project / "reports/study/study.md").read_text()
    assert "Ours, 6 steps, guidance 2 − DiffFit (no memory), 6 steps, guidance 2" in md and "MDD" in md
    assert (project / "reports/study/figure.png").stat().st_size > 1000
    # the k-NN measures are logged on the diversity runs
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name(f"{cfg['mlflow']['experiment_prefix']}-diversity")
    runs = client.search_runs([exp.experiment_id], filter_string="params.method = 'difffit-guidance-1'")
    assert runs and {"prdc_coverage_seed0", "prdc_precision_seed0", "prdc_recall_seed0",
                     "prdc_density_seed0"} <= set(runs[0].data.metrics)
    assert "Nothing to be done" in run(["snakemake", "-n", "--configfile", "study.yaml", "--", "study"],
                                       project).stdout


def test_damaged_and_deleted_results_are_named_and_rebuilt(smoke):
    """On the finished smoke DAG, as a careless user: a '{' written into an evaluation JSON in place
    leaves its kept copy under results/history intact; the next run stops at the parents job naming the
    file, line and column; `divdistill verify` (make verify) names the cell of a damaged and of a deleted
    result with the command that rebuilds them; that command rebuilds them, after which verify passes."""
    project, cfg, _ = smoke
    ipc = str(cfg["ipc"][0])
    assert run(["divdistill", "verify"], project).returncode == 0  # the finished run has all its evidence
    damaged = project / f"results/eval/fashion-hard/ours/ipc{ipc}/convnet/hard/distill0-seed0.json"
    deleted = project / f"results/eval/fashion-hard/random/ipc{ipc}/convnet/hard/distill0-seed0.json"
    good = json.loads(damaged.read_text())
    kept = project / "results/history" / damaged.relative_to(project / "results") / f"{good['run_id']}.json"
    assert json.loads(kept.read_text()) == good
    with open(damaged, "r+") as f:  # in place, as an editor or `>` would: the same inode
        f.write("{{")
    assert json.loads(kept.read_text()) == good  # the kept copy is another file
    deleted.unlink()

    p = run(["divdistill", "verify"], project, check=False)
    assert p.returncode == 1
    assert f"table1 fashion-hard / ours / {ipc} / convnet / hard: {damaged.relative_to(project)} changed" in p.stdout
    assert f"table1 fashion-hard / random / {ipc} / convnet / hard: {deleted.relative_to(project)} is missing" in p.stdout
    command = p.stdout.rstrip().splitlines()[-1].strip()
    assert command.startswith("rm -f -- ") and command.endswith("--forcerun parents render -- all")

    p = run(["snakemake", "--cores", "2", "all"], project, check=False)  # the damaged file is newer: read again
    assert p.returncode != 0
    log = (project / "results/logs/parents.log").read_text()
    assert f"{damaged.relative_to(project)}:1:2: not valid JSON" in log, log[-2000:]

    run(["bash", "-c", command], project)  # the printed command, as a user would paste it
    assert json.loads(damaged.read_text())["test_acc"] == good["test_acc"]  # same seed, same result
    assert deleted.is_file()
    assert "every one present and unchanged" in run(["divdistill", "verify"], project).stdout
