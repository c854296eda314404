"""The suite's Slurm profile against a real single-node Slurm cluster (tests/slurm/cluster.sh).

A slice of the smoke DAG runs through `snakemake --profile profiles/slurm` (the repository's profile,
with the local cluster's partition, no GPU and one thread per job given on the command line, as the
README's cluster section says), every job through sbatch. Checked: Slurm listed every job and wrote its
log where the profile's executor puts them, every MLflow run ended FINISHED, the results equal a local
run's bit for bit; a fine-tuning job cancelled mid-run with scancel is resubmitted (the profile's
retries) and resumes from its checkpoint to the uninterrupted result; a job failing on a bad parameter
is reported failed and its MLflow run ends FAILED; a GPU rule's sbatch line asks for the GPU.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from .conftest import ROOT, needs_fashion, new_project, project_env, run

pytestmark = [needs_fashion, pytest.mark.slow, pytest.mark.workflow]

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
RULES = ("prepare", "pretrain_vae", "pretrain_dit", "encode", "finetune", "sample", "select", "features",
         "diversity", "evaluate", "evaluate_full", "figure1", "parents", "render", "synthesize")
# The local cluster: its partition, no GPU, one thread and modest memory per job (the profile's
# per-rule values are for an 80 GB GPU node); the profile's other settings apply as written.
# Job status from squeue: the cluster keeps no accounting database (cluster.sh, MinJobAge 1 h).
STATUS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
          "--seconds-between-status-checks", "2"]
LOCAL = ["--default-resources", "slurm_partition=local", "mem_mb=3000", "runtime=30",
         "--set-resources", *[f"{r}:gpu=0" for r in RULES], *[f"{r}:mem_mb=3000" for r in RULES],
         "--set-threads", *[f"{r}=1" for r in RULES], *STATUS]
FINETUNED = "results/finetuned/fashion-hard/ours/distill0"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        pytest.skip("Slurm is not installed: apt-get install -y slurm-wlm munge (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (slurmd starts jobs as their user)")
    state = tmp_path_factory.mktemp("slurm")
    try:
        out = run(["bash", str(CLUSTER), "start", str(state)], ROOT, project_env(), timeout=120).stdout
        env = {**project_env(), "SLURM_CONF": out.strip().splitlines()[-1].split("=", 1)[1]}
        yield env
    finally:  # stopped whatever happened, the start included
        subprocess.run(["bash", str(CLUSTER), "stop", str(state)], timeout=60)


def slice_config() -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg.update(seeds=[0], ipc=[2])
    cfg["sweeps"] = {"dataset": "fashion-hard", "method": "ours", "model": "convnet",
                     "memory_size": [cfg["finetune"]["memory_size"]]}
    cfg["tables"] = {"table1": {"datasets": ["fashion-hard"], "methods": ["random", "ours"], "models": ["convnet"]}}
    # a fine-tuning long enough to cancel mid-run: a smoke step takes ~40 ms, so after the first
    # checkpoint (step 10) ~190 steps, several seconds, remain for the test to see it and scancel
    cfg["finetune"].update(epochs=10, max_steps=200, checkpoint_every=10)
    return cfg


def results(root: Path) -> dict:
    """Every result of a run, run ids and timings left out: eval and diversity JSONs, the distilled
    sets' tensors and the fine-tuned weights."""
    out = {}
    for p in sorted((root / "results" / "eval").rglob("*.json")) + sorted((root / "results" / "diversity").rglob("*.json")):
        r = json.loads(p.read_text())
        out[p.relative_to(root).as_posix()] = {k: v for k, v in r.items() if k not in ("run_id", "wall_s")}
    for p in sorted((root / "results" / "distilled").rglob("*.safetensors")):
        out[p.relative_to(root).as_posix()] = {k: v.tolist() for k, v in load_file(p).items()}
    weights = root / FINETUNED / "diffusion_pytorch_model.safetensors"
    out[FINETUNED] = weights.read_bytes()
    return out


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = new_project(tmp_path_factory.mktemp("local") / "p", slice_config())
    run(["snakemake", "--cores", "2", "all"], root)
    return root


@pytest.fixture(scope="module")
def on_slurm(cluster, tmp_path_factory):
    """The slice through the profile, its fine-tuning cancelled with scancel once it has checkpointed
    (checkpoint_every 1): (project, the cancelled Slurm job id). The later tests reuse the project."""
    root = new_project(tmp_path_factory.mktemp("slurm-run") / "p", slice_config())
    cmd = ["snakemake", "--profile", str(ROOT / "profiles" / "slurm"), *LOCAL, "all"]
    job = subprocess.Popen(cmd, cwd=root, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cancelled, deadline = None, time.time() + 900
    ckpts = root / "results" / "checkpoints" / "finetune" / "fashion-hard" / "ours" / "distill0"
    while cancelled is None and job.poll() is None and time.time() < deadline:
        if ckpts.exists() and any(ckpts.rglob("step-*")):
            rows = run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], root, cluster).stdout.split()
            ids = [r.split("|")[0] for r in rows if "finetune" in r]
            if ids:
                run(["scancel", ids[0]], root, cluster)
                cancelled = ids[0]
        time.sleep(0.2)
    out, _ = job.communicate(timeout=1800)
    assert job.returncode == 0, out[-5000:]  # the profile's retries resubmitted the cancelled job
    assert cancelled is not None, "the fine-tuning finished before it could be cancelled"
    return root, cancelled


def test_the_smoke_slice_through_slurm_equals_a_local_run_and_resumes_a_cancelled_job(cluster, local, on_slurm):
    root, cancelled = on_slurm
    # every job went through Slurm: squeue (MinJobAge 1 h) lists them, each with its log where the profile
    # puts them (slurm-logdir)
    listed = run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%k"], root, cluster).stdout.split()
    rules = [r.split("|")[2] for r in listed]
    for rule in ("prepare", "pretrain_dit", "finetune", "sample", "evaluate", "render"):
        assert any(rule in k for k in rules), (rule, listed)
    assert any(r.startswith(f"{cancelled}|CANCELLED") for r in listed)
    slurm_logs = root / "results" / "logs" / "slurm"
    logged = {p.relative_to(slurm_logs).parts[0] for p in slurm_logs.rglob("*.log")}
    assert logged >= {"rule_prepare", "rule_finetune", "rule_evaluate", "rule_parents", "rule_render"}, logged

    # the cancelled fine-tuning resumed from its checkpoint, and everything equals the local run
    log = (root / "results" / "logs" / "finetune" / "fashion-hard" / "ours" / "distill0.log").read_text()
    assert "resuming from" in log, log[-2000:]
    assert results(root) == results(local)

    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    by_stage = {e.name.split("-")[-1]: [r.info.status for r in client.search_runs([e.experiment_id])]
                for e in client.search_experiments() if e.name.startswith("divdistill-")}
    for stage in ("prepare", "pretrain", "finetune", "sample", "select", "features", "diversity", "evaluate"):
        assert "FINISHED" in by_stage[stage], (stage, by_stage)
    status = [s for runs in by_stage.values() for s in runs]
    # every run FINISHED but the cancelled fine-tuning's first attempt: SIGTERM mid-run ended it KILLED
    assert set(status) <= {"FINISHED", "KILLED"} and status.count("KILLED") == 1, by_stage
    assert sorted(by_stage["finetune"]) == ["FINISHED", "KILLED"], by_stage


def test_a_failing_job_is_reported_and_its_run_ends_failed(cluster, on_slurm):
    root, _ = on_slurm
    good = (root / "params.yaml").read_text()
    cfg = yaml.safe_load(good)
    cfg["evaluate"]["resolution"] = 3  # passes the schema; the ConvNet cannot pool 3 px three times
    (root / "params.yaml").write_text(yaml.safe_dump(cfg))
    try:
        p = run(["snakemake", "--profile", str(ROOT / "profiles" / "slurm"), *LOCAL, "--retries", "0",
                 "--until", "evaluate"], root, cluster, check=False, timeout=1800)
    finally:
        (root / "params.yaml").write_text(good)
    assert p.returncode != 0 and "Error in rule evaluate" in p.stdout + p.stderr
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("divdistill-evaluate")
    newest = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert newest.info.status == "FAILED" and newest.data.params["resolution"] == "3"


def test_a_gpu_rules_sbatch_line_asks_for_the_gpu(cluster, on_slurm):
    """The profile's GPU requests as the plugin writes them: the node has no GPU, so the submission is
    refused, but the sbatch line (Snakemake's verbose output) shows the request."""
    root, _ = on_slurm
    cmd = ["snakemake", "--profile", str(ROOT / "profiles" / "slurm"), "--default-resources",
           "slurm_partition=local", "--set-threads", *[f"{r}=1" for r in RULES], "--set-resources",
           "encode:mem_mb=3000", "encode:gpu=1", *STATUS, "--retries", "0", "--verbose",
           "--forcerun", "encode", "--until", "encode"]
    p = run(cmd, root, cluster, check=False, timeout=1800)
    text = p.stdout + p.stderr
    line = next((ln for ln in text.splitlines() if "sbatch" in ln and "encode" in ln), "")
    assert "--gpus=1" in line, text[-4000:]
