"""One MLflow run per job (``start_run``): parameters, buffered metrics, artifacts, the owner's
process tags, and FAILED/KILLED when the job ends by an exception or a signal. The database and
its experiments exist already (store.py ``init_tracking``, the Snakefile's onstart)."""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager

from .store import _client, _retry, experiment_name, git_commit, owner_tags


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
        values = {k: float(v) for k, v in metrics.items() if v is not None}  # None: undefined, not logged
        if bad := [k for k, v in values.items() if not math.isfinite(v)]:
            raise ValueError(f"non-finite metric(s) {', '.join(f'{k}={values[k]}' for k in bad)} in run "
                             f"{self.run_id}: a job never records nan/inf as a result")
        self._buffer += [Metric(k, v, ts, step) for k, v in values.items()]
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
    """Run in the stage's experiment; ends FINISHED, or FAILED (KILLED when interrupted or terminated:
    SIGINT, SIGTERM) and re-raises."""
    from mlflow.entities import Param

    client = _client(cfg["tracking_uri"])
    name = experiment_name(cfg["experiment_prefix"], stage)
    exp = _retry(client.get_experiment_by_name, name)
    if exp is None:
        raise RuntimeError(f"MLflow experiment {name!r} does not exist in {cfg['tracking_uri']}: "
                           "run through Snakemake (its onstart creates it) or `divdistill init-tracking`")
    all_tags = {"mlflow.source.git.commit": git_commit(), "stage": stage,
                "rule": os.environ.get("DIVDISTILL_RULE", stage), **owner_tags(), **(tags or {})}
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
    except SystemExit as e:  # cli.main turns SIGTERM (Snakemake stopping a job, scancel, preemption) into 143
        status = "KILLED" if e.code == 143 else "FAILED"
        raise
    finally:
        try:
            handle.flush()
        finally:
            _retry(client.set_terminated, run_id, status=status)
