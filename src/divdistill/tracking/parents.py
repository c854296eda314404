"""Table cells as MLflow parent runs, a job of its own (rule ``parents``): one run per (dataset,
method, ipc, model) in the evaluate experiment with that cell's seed runs nested below it, so the
UI shows each table number with the runs it averages; the run ids go to a file the HTML tables
link from (report/html.py)."""

from __future__ import annotations

import time

from .store import _client, _retry, experiment_name, git_commit

# Table cells as MLflow parent runs: the render step files one run per (dataset, method, ipc,
# model) in the evaluate experiment and nests that cell's seed runs under it, so the UI shows
# each table number with the runs it averages. Parents carry PARENT_TAG; counting evaluation
# jobs means leaving them out.
PARENT_TAG = "divdistill.parent"
CELL_KEYS = ("dataset", "method", "ipc", "model", "protocol")
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
    {(dataset, method, ipc, model, protocol): parent run id}).
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
