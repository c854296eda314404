"""MLflow bookkeeping: one run per job in ``mlflow.db`` (SQLite at the project root).

The database and the experiments are created once, before any job starts
(``init_tracking``, called from the Snakefile's ``onstart``): concurrent
first-time schema migrations fail, and creating experiments by name from racing
processes can file runs under "Default". Jobs therefore only *look up* their
experiment and address it by id. Every write is retried on a locked database,
and metrics are buffered and sent in batches so eight concurrent jobs stay far
from SQLite's lock timeout.
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

STAGES = ("prepare", "pretrain", "finetune", "sample", "features", "select", "dm", "diversity", "evaluate")


def experiment_name(prefix: str, stage: str) -> str:
    return f"{prefix}-{stage}"


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient  # imported lazily: ~1 s

    return MlflowClient(tracking_uri=tracking_uri)


def _retry(fn, *args, attempts: int = 20, **kwargs):
    """Call an MLflow client method, retrying while SQLite reports a lock."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # MlflowException wraps sqlalchemy's OperationalError
            if "locked" not in str(e).lower() or i == attempts - 1:
                raise
            time.sleep(0.2 * (i + 1))


def init_tracking(cfg: dict) -> dict[str, str]:
    """Create the database and every stage's experiment; return name -> id."""
    client = _client(cfg["tracking_uri"])
    root = Path(cfg["artifact_root"]).resolve()
    ids = {}
    for stage in STAGES:
        name = experiment_name(cfg["experiment_prefix"], stage)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            ids[name] = client.create_experiment(name, artifact_location=(root / name).as_uri())
        else:
            ids[name] = exp.experiment_id
    return ids


def close_stale_runs(cfg: dict) -> int:
    """Mark KILLED every divdistill run still RUNNING; returns how many. Called when a workflow starts
    (Snakemake locks the project, so no job of this project is running then): a job killed with
    SIGKILL, or whose machine died, never ended its run, and it would otherwise show RUNNING forever."""
    client = _client(cfg["tracking_uri"])
    ids = [e.experiment_id for stage in STAGES
           if (e := _retry(client.get_experiment_by_name, experiment_name(cfg["experiment_prefix"], stage)))]
    if not ids:
        return 0
    stale = _retry(client.search_runs, ids, filter_string="attributes.status = 'RUNNING'", max_results=10000)
    for run in stale:
        _retry(client.set_tag, run.info.run_id, "divdistill.closed", "found RUNNING when a later workflow started")
        _retry(client.set_terminated, run.info.run_id, status="KILLED")
    return len(stale)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = str(v)
    return flat


class Run:
    """A started MLflow run; metrics are buffered and flushed every ``flush_s`` seconds."""

    def __init__(self, client, run_id: str, flush_s: float = 30.0):
        self.client, self.run_id, self.flush_s = client, run_id, flush_s
        self._buffer, self._last = [], time.monotonic()

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
        if time.monotonic() - self._last > self.flush_s:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._buffer), 1000):  # MLflow caps a batch at 1000 metrics
            _retry(self.client.log_batch, self.run_id, metrics=self._buffer[i:i + 1000])
        self._buffer, self._last = [], time.monotonic()

    def set_tag(self, key: str, value) -> None:
        _retry(self.client.set_tag, self.run_id, key, str(value))

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)


@contextmanager
def start_run(cfg: dict, stage: str, run_name: str, params: dict, tags: dict | None = None):
    """Run in the stage's experiment; ends FINISHED, or FAILED (KILLED on interrupt) and re-raises."""
    from mlflow.entities import Param

    client = _client(cfg["tracking_uri"])
    name = experiment_name(cfg["experiment_prefix"], stage)
    exp = _retry(client.get_experiment_by_name, name)
    if exp is None:
        raise RuntimeError(f"MLflow experiment {name!r} does not exist in {cfg['tracking_uri']}: "
                           "run through Snakemake (its onstart creates it) or `divdistill init-tracking`")
    all_tags = {"mlflow.source.git.commit": git_commit(), "stage": stage,
                "rule": os.environ.get("DIVDISTILL_RULE", stage), **(tags or {})}
    run = _retry(client.create_run, exp.experiment_id, run_name=run_name,
                 tags={k: str(v) for k, v in all_tags.items()})
    run_id = run.info.run_id
    flat = _flatten(params)
    for chunk in range(0, len(flat), 100):  # MLflow caps params per batch at 100
        items = list(flat.items())[chunk:chunk + 100]
        _retry(client.log_batch, run_id, params=[Param(k, v[:6000]) for k, v in items])
    handle = Run(client, run_id)
    status = "FAILED"
    try:
        yield handle
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            handle.flush()
        finally:
            _retry(client.set_terminated, run_id, status=status)


# Table cells as MLflow parent runs: the render step files one run per (dataset, method, ipc,
# model) in the evaluate experiment and nests that cell's seed runs under it, so the UI shows
# each table number with the runs it averages. Parents carry PARENT_TAG; counting evaluation
# jobs means leaving them out.
PARENT_TAG = "divdistill.parent"
CELL_KEYS = ("dataset", "method", "ipc", "model")
UI_URL = "http://127.0.0.1:5000"  # `make ui`


def run_url(experiment_id: str, run_id: str, ui: str = UI_URL) -> str:
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"


def _search_all(client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = _retry(client.search_runs, [experiment_id], filter_string=filter_string, max_results=1000,
                      page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def nest_seed_runs(cfg: dict, cells: list[dict]) -> tuple[str, dict[tuple, str]]:
    """One parent run per table cell, found again by its tags on every call (never duplicated).

    ``cells``: dicts with ``name`` (the parent's run name), ``tags`` (at least CELL_KEYS), ``metrics``
    and ``run_ids`` (the seed runs to nest). Each parent's metrics are logged anew (the UI shows the
    latest value) and each seed run gets ``mlflow.parentRunId``. Seed runs missing from the database
    (results made elsewhere) are reported on stderr and skipped. Returns (evaluate experiment id,
    {(dataset, method, ipc, model): parent run id}).
    """
    import sys

    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException

    client = _client(cfg["tracking_uri"])
    name = experiment_name(cfg["experiment_prefix"], "evaluate")
    exp = _retry(client.get_experiment_by_name, name)
    if exp is None:
        raise RuntimeError(f"MLflow experiment {name!r} does not exist in {cfg['tracking_uri']}")
    existing = {}
    for r in _search_all(client, exp.experiment_id, f"tags.`{PARENT_TAG}` = '1'"):
        key = tuple(r.data.tags.get(k) for k in CELL_KEYS)
        existing.setdefault(key, r.info.run_id)  # (a duplicate from elsewhere is left alone)
    commit, parents, missing = git_commit(), {}, []
    for cell in cells:
        key = tuple(str(cell["tags"][k]) for k in CELL_KEYS)
        tags = {**{k: str(v) for k, v in cell["tags"].items()}, PARENT_TAG: "1", "stage": "evaluate",
                "mlflow.source.git.commit": commit, "mlflow.runName": cell["name"],
                "mlflow.note.content": f"Table cell: {len(cell['run_ids'])} seed runs nested below; "
                                       "metrics in % of final-epoch test accuracy."}
        run_id = existing.get(key)
        if run_id is None:
            run_id = _retry(client.create_run, exp.experiment_id, run_name=cell["name"], tags=tags).info.run_id
            created = True
        else:
            created = False
        ts = int(time.time() * 1000)
        _retry(client.log_batch, run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in cell["metrics"].items()],
               tags=[] if created else [RunTag(k, v) for k, v in tags.items()])
        if created:
            _retry(client.set_terminated, run_id, status="FINISHED")
        for seed_run in cell["run_ids"]:
            try:
                _retry(client.set_tag, seed_run, "mlflow.parentRunId", run_id)
            except MlflowException as e:
                if getattr(e, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
                missing.append(seed_run)
        parents[key] = run_id
    if missing:
        print(f"nest_seed_runs: {len(missing)} seed runs not in {cfg['tracking_uri']}, left unnested: "
              + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""), file=sys.stderr)
    return exp.experiment_id, parents
