import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from divdistill.tracking.runs import start_run
from divdistill.tracking.store import TrackingError, experiment_name, init_tracking


@pytest.fixture
def cfg(tmp_path):
    return {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_root": str(tmp_path / "mlartifacts"),
            "experiment_prefix": "t"}


def test_runs_land_in_their_experiment_with_params_and_metrics(cfg):
    ids = init_tracking(cfg)
    assert init_tracking(cfg) == ids  # idempotent
    with start_run(cfg, "evaluate", "cell", {"a": 1, "nested": {"b": [1, 2]}}, tags={"method": "random"}) as run:
        for epoch in range(3):
            run.log_metrics({"train_loss": 1.0 / (epoch + 1)}, step=epoch)
    client = MlflowClient(cfg["tracking_uri"])
    r = client.get_run(run.run_id)
    assert r.info.experiment_id == ids[experiment_name("t", "evaluate")]
    assert r.info.status == "FINISHED"
    assert r.data.params == {"a": "1", "nested.b": "[1, 2]"}
    assert r.data.tags["method"] == "random" and r.data.tags["stage"] == "evaluate"
    history = client.get_metric_history(run.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]


def test_failing_job_ends_failed(cfg):
    init_tracking(cfg)
    with pytest.raises(RuntimeError):
        with start_run(cfg, "evaluate", "boom", {}) as run:
            raise RuntimeError("boom")
    assert MlflowClient(cfg["tracking_uri"]).get_run(run.run_id).info.status == "FAILED"


def test_uninitialised_database_is_a_clear_error(cfg):
    with pytest.raises(RuntimeError, match="does not exist"):
        with start_run(cfg, "evaluate", "x", {}):
            pass


def test_parents_job_files_one_parent_run_per_table_cell_and_nests_the_seed_runs(cfg, tmp_path):
    """Two cells of two seed runs each, the parents job run twice: one parent per cell, reused and
    updated; rendering writes nothing to MLflow and links each HTML cell to its parent."""
    import json

    from divdistill import cli
    from divdistill.io import read_json, write_json
    from divdistill.report.render import render_all
    from divdistill.tracking.parents import PARENT_TAG

    ids = init_tracking(cfg)
    spec = {"seeds": [0, 1], "distill_seeds": [0], "ipc": [10],
            "tables": {"table1": {"datasets": ["d"], "methods": ["random", "ours"], "models": ["convnet"]}}}
    accs = {"random": [0.40, 0.50], "ours": [0.60, 0.64]}
    paths, seed_runs = [], {}
    for method, values in accs.items():
        for seed, acc in enumerate(values):
            cell = {"dataset": "d", "method": method, "ipc": "10", "model": "convnet", "distill_seed": 0, "seed": seed}
            with start_run(cfg, "evaluate", f"d/{method}/10/convnet/distill0-seed{seed}", cell,
                           tags={k: cell[k] for k in ("dataset", "method", "ipc", "model")}) as run:
                run.log_metrics({"test_acc": acc})
            paths.append(tmp_path / f"{method}{seed}.json")
            write_json(paths[-1], {"cell": cell, "test_acc": acc, "best_test_acc": acc, "run_id": run.run_id,
                                   "curve": []})
            seed_runs[run.run_id] = method

    client = MlflowClient(cfg["tracking_uri"])
    exp_id = ids[experiment_name("t", "evaluate")]

    def render():
        out = tmp_path / "parents.json"
        cli.main(["parents", "--spec", json.dumps(spec), "--results", *map(str, paths), "--out", str(out),
                  "--tracking", json.dumps(cfg)])
        before = len(client.search_runs([exp_id]))
        render_all(spec, [str(p) for p in paths], tmp_path / "tables", tmp_path / "metrics.json",
                   tmp_path / "curves", parents=read_json(out))
        assert len(client.search_runs([exp_id])) == before  # the render itself files nothing

    def parents():
        runs = client.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '1'")
        return {r.data.tags["method"]: r for r in runs}

    render()
    first = parents()
    render()
    second = parents()
    assert set(second) == {"random", "ours"}  # exactly one parent per cell, after two renders
    assert {m: r.info.run_id for m, r in first.items()} == {m: r.info.run_id for m, r in second.items()}
    assert len(client.search_runs([exp_id])) == 4 + 2
    for method, r in second.items():
        assert r.info.run_name == f"table1/d/{method}/ipc10/convnet/hard" and r.info.status == "FINISHED"
        assert {k: r.data.tags[k] for k in ("table", "dataset", "method", "ipc", "model", "protocol")} == {
            "table": "table1", "dataset": "d", "method": method, "ipc": "10", "model": "convnet", "protocol": "hard"}
    for run_id, method in seed_runs.items():
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == second[method].info.run_id
    # mean and sample std (%): random 40, 50 -> 45 ± 7.07; ours 60, 64 -> 62 ± 2.83
    for method, (mean, std) in {"random": (45.0, 50 ** 0.5), "ours": (62.0, 8 ** 0.5)}.items():
        m = second[method].data.metrics
        assert abs(m["mean"] - mean) < 1e-9 and abs(m["std"] - std) < 1e-9 and m["n"] == 2
    # the HTML table links each cell to its parent run
    page = (tmp_path / "tables" / "table1.html").read_text()
    assert f"#/experiments/{exp_id}/runs/{second['ours'].info.run_id}" in page

    # a changed result updates its parent's metrics in place
    res = read_json(paths[0])
    write_json(paths[0], {**res, "test_acc": 0.30})
    render()
    third = parents()
    assert third["random"].info.run_id == second["random"].info.run_id
    assert abs(third["random"].data.metrics["mean"] - 40.0) < 1e-9


def test_seed_runs_missing_from_the_database_are_skipped(cfg, capsys):
    from divdistill.tracking.parents import nest_seed_runs

    init_tracking(cfg)
    cell = {"name": "table1/d/random/ipc10/convnet", "metrics": {"mean": 1.0},
            "tags": {"dataset": "d", "method": "random", "ipc": "10", "model": "convnet", "protocol": "hard",
                     "table": "table1"},
            "run_ids": ["0123456789abcdef0123456789abcdef"]}
    _, parents = nest_seed_runs(cfg, [cell])
    assert list(parents) == [("d", "random", "10", "convnet", "hard")]
    assert "1 seed runs not in" in capsys.readouterr().err


def test_runs_left_running_by_killed_jobs_are_closed_at_the_next_start(cfg):
    """SIGKILL gives a job no chance to end its run; the next workflow start marks it KILLED, but only
    once its process is gone: a run whose job still runs (another workflow's) is left alone, and so is
    a run started on another host (a cluster node)."""
    from divdistill.tracking.store import close_stale_runs, owner_tags

    ids = init_tracking(cfg)
    client = MlflowClient(cfg["tracking_uri"])
    eid = ids[experiment_name(cfg["experiment_prefix"], "evaluate")]
    legacy = client.create_run(eid, run_name="no owner recorded").info.run_id  # never terminated
    done = client.create_run(eid, run_name="done", tags=owner_tags()).info.run_id
    client.set_terminated(done, status="FINISHED")
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = Path(f"/proc/{job.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        live_tags = {"divdistill.host": socket.gethostname(), "divdistill.pid": str(job.pid),
                     "divdistill.pid_start": start}
        live = client.create_run(eid, run_name="live", tags=live_tags).info.run_id
        reused = client.create_run(eid, run_name="pid reused", tags=live_tags | {"divdistill.pid_start": "1"}).info.run_id
        remote = client.create_run(eid, run_name="node", tags=live_tags | {"divdistill.host": "node-17"}).info.run_id
        assert close_stale_runs(cfg) == (2, 1)  # legacy and the reused pid closed; the remote one left
        status = lambda r: client.get_run(r).info.status  # noqa: E731
        assert [status(r) for r in (legacy, done, live, reused, remote)] == \
            ["KILLED", "FINISHED", "RUNNING", "KILLED", "RUNNING"]
    finally:
        job.kill()
        job.wait()
    assert close_stale_runs(cfg) == (1, 1)  # its process gone: now the live one is stale too
    assert status(live) == "KILLED" and "divdistill.closed" in client.get_run(live).data.tags
    assert close_stale_runs(cfg) == (0, 1)


def test_start_run_records_its_process(cfg):
    init_tracking(cfg)
    with start_run(cfg, "evaluate", "r", {}) as run:
        tags = MlflowClient(cfg["tracking_uri"]).get_run(run.run_id).data.tags
    assert tags["divdistill.pid"] == str(os.getpid()) and tags["divdistill.host"] == socket.gethostname()


def test_metrics_must_be_finite(cfg):
    init_tracking(cfg)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="non-finite metric"):
            with start_run(cfg, "evaluate", "r", {}) as run:
                run.log_metrics({"similarity": bad})
    with start_run(cfg, "evaluate", "r", {}) as run:
        run.log_metrics({"similarity": None})  # undefined (one latent in a memory): not logged, no error
    assert MlflowClient(cfg["tracking_uri"]).get_run(run.run_id).data.metrics == {}


def _result_naming_a_run(root: Path) -> Path:
    path = root / "results" / "eval" / "x.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run_id": "0123abcd", "test_acc": 0.5}))
    return path


@pytest.mark.parametrize("state", ["empty", "malformed", "missing"])
def test_a_lost_database_is_never_silently_replaced(cfg, tmp_path, state):
    """mlflow.db empty, not a database, or gone, while results name runs in it: refused, naming the file
    and what to do; nothing is created. Without such results an empty or missing file is a new project."""
    db = tmp_path / "mlflow.db"
    if state == "empty":
        db.write_bytes(b"")
    elif state == "malformed":
        db.write_bytes(b"SQLite format 3\0" + b"\x07" * 5000)  # a header, then garbage
    init_ok = state != "malformed"
    if init_ok:
        init_tracking(cfg)  # no results yet: a new history is fine
        db.unlink()
        if state == "empty":
            db.write_bytes(b"")
    else:
        with pytest.raises(TrackingError, match=rf"{db} is malformed.*Move it aside"):
            init_tracking(cfg)
    ref = _result_naming_a_run(tmp_path)
    with pytest.raises(TrackingError) as e:
        init_tracking(cfg)
    assert str(db) in str(e.value) and str(ref) in str(e.value) and "Restore" in str(e.value)
    assert db.exists() == (state != "missing") and (state != "empty" or db.stat().st_size == 0)
