"""Faults: each long job type killed with SIGKILL at a random point of a real DAG run, then the DAG rerun.

For pretrain (the DiT), finetune, sample and evaluate: the killed job's output never appears half-made,
the rerun completes (pretrain, finetune and evaluate resume from their last checkpoint, sample starts
over), the result equals an uninterrupted run's bit for bit (CPU), and the MLflow run the kill left
RUNNING is closed as KILLED when the rerun starts.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from divdistill.io import load_tensors

from .conftest import ROOT, needs_fashion, new_project, project_env

pytestmark = [needs_fashion, pytest.mark.slow, pytest.mark.workflow]

TARGETS = {  # job type -> (its command word, its output, its checkpoint folder or None)
    "pretrain": ("pretrain-dit", "results/pretrained/dit", "results/checkpoints/pretrain/dit"),
    "finetune": ("finetune", "results/finetuned/fashion-hard/ours/distill0",
                 "results/checkpoints/finetune/fashion-hard/ours/distill0"),
    "sample": ("sample", "results/distilled/fashion-hard/ours/distill0-seed0.safetensors", None),
    "evaluate": ("evaluate", "results/eval/fashion-hard/ours/ipc2/convnet/hard/distill0-seed0.json",
                 "results/checkpoints/evaluate/fashion-hard/ours/ipc2/convnet/hard/distill0/seed0"),
}


def faults_config() -> dict:
    """The smoke config cut to one chain (fashion-hard, ours, IPC 2, one seed), with jobs long enough
    to be killed mid-way and frequent checkpoints."""
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg.update(seeds=[0], ipc=[2])
    cfg.pop("sweeps", None)
    cfg["tables"] = {"table1": {"datasets": ["fashion-hard"], "methods": ["ours"], "models": ["convnet"]}}
    cfg["pretrain"].update(checkpoint_every=20)
    cfg["pretrain"]["dit"].update(steps=400)
    cfg["finetune"].update(epochs=20, max_steps=600, checkpoint_every=20)
    cfg["sample"].update(steps=400)
    cfg["evaluate"].update(checkpoint_every=5, eval_every=5, epochs=[{"max_ipc": 2, "epochs": 200}])
    return cfg


def snakemake(project: Path, target: str, background=False):
    cmd = ["snakemake", "--cores", "1", target]
    if background:
        return subprocess.Popen(cmd, cwd=project, env=project_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    p = subprocess.run(cmd, cwd=project, env=project_env(), capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def job_pid(project: Path, word: str) -> int | None:
    """The running `divdistill <word>` process whose working directory is ``project``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            # the job itself (argv [..., divdistill, <word>, ...]), not its `bash -c "..."` wrapper
            if word.encode() in argv and os.path.realpath(os.readlink(proc / "cwd")) == os.path.realpath(project):
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def wait_for(cond, timeout=300.0, every=0.05):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if (v := cond()) is not None and v is not False:
            return v
        time.sleep(every)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of the whole chain."""
    project = new_project(tmp_path_factory.mktemp("faults") / "reference", faults_config())
    snakemake(project, TARGETS["evaluate"][1])
    return project


def same_output(kind: str, a: Path, b: Path) -> None:
    if kind in ("pretrain", "finetune"):
        for f in sorted(a.glob("*.safetensors")):
            ta, tb = load_file(str(f)), load_file(str(b / f.name))
            assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), f.name
    elif kind == "sample":
        (ta, _), (tb, _) = load_tensors(a), load_tensors(b)
        assert all(torch.equal(ta[k], tb[k]) for k in ta)
    else:
        ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
        assert ra["test_acc"] == rb["test_acc"] and ra["curve"] == rb["curve"]


@pytest.mark.parametrize("kind", list(TARGETS))  # in DAG order: each reuses the previous one's outputs
def test_sigkill_then_rerun_equals_an_uninterrupted_run(kind, reference, tmp_path_factory):
    word, output, checkpoint = TARGETS[kind]
    project = tmp_path_factory.getbasetemp() / "faults-victim"
    if not project.exists():
        new_project(project, faults_config())
    rng = random.Random(f"{kind}-{time.time_ns()}")  # a random point, printed for a failing run
    proc = snakemake(project, output, background=True)
    pid = wait_for(lambda: job_pid(project, word))
    if checkpoint:  # past a first checkpoint, so the rerun has something to resume
        wait_for(lambda: any((project / checkpoint).glob("*/step-*")) or None)  # <config key>/step-N
        time.sleep(rng.uniform(0.0, 0.5))
    else:  # mid-work: once its MLflow run exists, before its output does
        client = MlflowClient(f"sqlite:///{project}/mlflow.db")
        exp_id = client.get_experiment_by_name(f"divdistill-{kind}").experiment_id
        wait_for(lambda: client.search_runs([exp_id], "attributes.status = 'RUNNING'") or None, every=0.2)
        time.sleep(rng.uniform(0.0, 0.5))
    if proc.poll() is not None or not Path(f"/proc/{pid}").exists():
        pytest.fail(f"{kind}: the job finished before the kill; make it longer in faults_config()")
    os.kill(pid, signal.SIGKILL)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, out[-2000:]
    assert not (project / output).exists(), "a killed job's output must not look complete"
    if checkpoint:
        steps = [int(d.name.split("-")[1]) for d in (project / checkpoint).glob("*/step-*")]
        assert steps, f"{kind}: no checkpoint to resume from"
        print(f"{kind}: killed after checkpoint step {max(steps)}")

    rerun = snakemake(project, output)
    assert "marked 1 MLflow run(s) left RUNNING by killed jobs as KILLED" in rerun.stdout + rerun.stderr
    same_output(kind, reference / output, project / output)
    if checkpoint and kind == "evaluate":
        assert not (project / checkpoint).exists()  # a finished evaluation cleans up after itself

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name(f"divdistill-{kind}")
    statuses = sorted(r.info.status for r in client.search_runs([exp.experiment_id])
                      if r.data.tags.get("divdistill.parent") != "1" and r.info.run_name != "vae")
    assert statuses == ["FINISHED", "KILLED"], statuses
    if kind == "evaluate":
        shutil.rmtree(project, ignore_errors=True)
