"""Trust under change: a researcher edits one value and reruns; a careless or hostile value never runs.

One small project (fashion-hard, Ours, IPC 2, one seed: every job type of the generative chain) under
git and DVC, whose data folder and generator folders have a space and a shell command substitution in
their names, shared by the tests below in file order:
- `dvc exp run -S finetune.lambda_gen=...` re-runs the affected jobs and succeeds, the table moves, and
  the replaced results are kept under results/history (nothing is lost to a rerun);
- a pretraining value changed in params.yaml re-runs everything downstream, and succeeds;
- a second workflow on disjoint targets leaves the first one's live MLflow runs alone;
- an emptied or corrupted mlflow.db stops the next workflow before any job, naming the file.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from divdistill.experiment import config as dd

from .conftest import FASHION, ROOT, copy_project, needs_fashion, project_env, run

pytestmark = [needs_fashion, pytest.mark.slow, pytest.mark.workflow]

HOSTILE = "a b $(touch PWNED)"  # a space and a command substitution: must reach every job as one literal
CELL = "results/eval/fashion-hard/ours/ipc2/convnet/hard/distill0-seed0.json"
FINETUNED = "results/finetuned/fashion-hard/ours/distill0"


def git(project, *args):
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], project)


def slice_config(project: Path) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    data = project / f"fashion {HOSTILE}"  # a real folder: links to the installed IDX files
    data.mkdir()
    for f in FASHION.iterdir():
        os.symlink(f, data / f.name)
    cfg.update(seeds=[0], ipc=[2])
    # Figure 4 at the default memory size only: no extra variant (DVC wants the section present)
    cfg["sweeps"] = {"dataset": "fashion-hard", "method": "ours", "model": "convnet",
                     "memory_size": [cfg["finetune"]["memory_size"]]}
    cfg["data"]["fashion_root"] = str(data)
    weights = f"results/pretrained {HOSTILE}"
    cfg["generator"].update(vae=f"{weights}/vae", vae_decoder=f"{weights}/vae", dit=f"{weights}/dit")
    cfg["tables"] = {"table1": {"datasets": ["fashion-hard"], "methods": ["ours"], "models": ["convnet"]}}
    return cfg


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("trust"))
    (project / "params.yaml").write_text(yaml.safe_dump(slice_config(project)))
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "init")
    run(["dvc", "init", "-q"], project)
    run(["dvc", "config", "core.analytics", "false"], project)
    run(["dvc", "repro"], project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first results")  # dvc.lock; reports/ and results/ are the DAG's, ignored
    assert not git(project, "ls-files", "reports", "results").stdout
    first = project.parent / f"{project.name}-first-table1.md"  # outside the repository: dvc exp runs there
    first.write_text((project / "reports" / "tables" / "table1.md").read_text())
    return project


def pwned(project: Path) -> list[Path]:
    return [p for p in project.rglob("PWNED")]


def test_hostile_folder_names_reach_every_job_as_one_literal(project):
    cfg = dd.load(project / "params.yaml")
    assert (project / cfg["generator"]["dit"] / "config.json").exists()  # the folder, named as written
    assert (project / CELL).exists() and (project / "reports" / "tables" / "table1.md").exists()
    assert not pwned(project), "a path reached a shell unquoted"


def finetune_runs(project):
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name("divdistill-finetune")
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_dvc_experiment_on_a_finetuning_value_reruns_and_keeps_the_old_result(project):
    before = json.loads((project / CELL).read_text())
    old_model = json.loads((project / FINETUNED / "finetune.json").read_text())
    run(["dvc", "exp", "run", "-S", "finetune.lambda_gen=0.5"], project)
    after = json.loads((project / CELL).read_text())
    assert after["run_id"] != before["run_id"] and after["curve"] != before["curve"]
    new_model = json.loads((project / FINETUNED / "finetune.json").read_text())
    assert new_model["params"]["lambda_gen"] == 0.5 and old_model["params"]["lambda_gen"] == 0.008
    # the table moved and nothing failed (at this size the final-epoch figure may tie by chance,
    # so the whole rendered table is compared: it holds the best-over-training figure too)
    first = (project.parent / f"{project.name}-first-table1.md").read_text()
    assert (project / "reports" / "tables" / "table1.md").read_text() != first
    run(["dvc", "metrics", "diff", "--json"], project)
    # the replaced results, kept under results/history by their MLflow run id
    kept = project / "results" / "history" / "eval" / "fashion-hard" / "ours" / "ipc2" / "convnet" / "hard"
    assert json.loads((kept / "distill0-seed0.json" / f"{before['run_id']}.json").read_text()) == before
    kept_model = project / "results" / "history" / "finetuned" / "fashion-hard" / "ours" / "distill0"
    assert json.loads((kept_model / old_model["run_id"] / "finetune.json").read_text()) == old_model
    # each configuration has its own checkpoint folder: the old one's final state is still there
    ckpts = project / "results" / "checkpoints" / "finetune" / "fashion-hard" / "ours" / "distill0"
    assert len([d for d in ckpts.iterdir() if d.is_dir()]) == 2
    _, runs = finetune_runs(project)
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    log = (project / "results" / "logs" / "finetune" / "fashion-hard" / "ours" / "distill0.log").read_text()
    assert "none for this configuration" in log and "starting fresh" in log


def test_a_changed_pretraining_value_reruns_everything_downstream(project):
    cfg = dd.load(project / "params.yaml")
    cfg["pretrain"]["dit"]["lr"] = 0.002
    (project / "params.yaml").write_text(yaml.safe_dump(cfg))
    before = json.loads((project / CELL).read_text())
    out = run(["snakemake", "--cores", "2", "all"], project).stderr
    for rule in ("pretrain_dit", "finetune", "sample", "evaluate", "render"):
        assert f"rule {rule}:" in out, rule
    assert "pretrain_vae" not in out  # its settings did not change
    after = json.loads((project / CELL).read_text())
    assert after["run_id"] != before["run_id"]
    client, runs = finetune_runs(project)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert "Nothing to be done" in run(["snakemake", "-n", "all"], project).stdout
    assert not pwned(project)


def _running(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")


def test_a_second_workflow_leaves_the_first_ones_live_runs_alone(project):
    """Workflow A evaluates the Full method (long schedule); while its job runs, workflow B (another
    dataset's preparation: disjoint outputs, so Snakemake lets both run) starts and closes stale runs.
    A's live run must stay RUNNING and end FINISHED, without a 'closed' tag."""
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    target = "results/eval/fashion-hard/full/ipcall/convnet/hard/distill0-seed0.json"
    # ~50 s, over params.yaml: B's start, its job server's imports and its job must fit inside
    (project / "long.yaml").write_text("evaluate: {epochs_full: 600, eval_every: 600}\n")
    a = subprocess.Popen(["snakemake", "--cores", "1", "--configfile", "params.yaml", "long.yaml", "--", target],
                         cwd=project, env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (live := _running(client, "divdistill-evaluate")):
            assert a.poll() is None and time.monotonic() < deadline, a.stdout.read() if a.poll() is not None else ""
            time.sleep(0.5)
        b = run(["snakemake", "--cores", "1", "results/data/fashion-easy/meta.json"], project)
        assert "as KILLED" not in b.stdout + b.stderr
        assert a.poll() is None, "workflow A ended before B started: lengthen its job"
        assert client.get_run(live[0].info.run_id).info.status == "RUNNING"
        assert a.wait(timeout=600) == 0, a.stdout.read()
    finally:
        if a.poll() is None:
            a.send_signal(signal.SIGINT)
            a.wait(timeout=60)
    done = client.get_run(live[0].info.run_id)
    assert done.info.status == "FINISHED" and "divdistill.closed" not in done.data.tags


@pytest.mark.parametrize("damage", ["empty", "corrupt"])
def test_an_emptied_or_corrupted_database_stops_the_workflow_naming_it(project, damage):
    db = project / "mlflow.db"
    saved = db.read_bytes()
    try:
        db.write_bytes(b"" if damage == "empty" else saved[:100] + b"\x00garbage" * 64)
        p = run(["snakemake", "--cores", "1", "--forcerun", "render", "all"], project, check=False)
        out = p.stdout + p.stderr
        assert p.returncode != 0 and "mlflow.db" in out and "Restore" in out, out[-2000:]
        assert "rule render" not in out  # refused before any job
        assert (db.stat().st_size == 0) == (damage == "empty")  # left as found: nothing recreated over it
    finally:
        db.write_bytes(saved)
    assert "Nothing to be done" in run(["snakemake", "-n", "all"], project).stdout
