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
import socket
import subprocess
import time
from pathlib import Path

STAGES = ("prepare", "pretrain", "finetune", "sample", "features", "select", "synthesize", "diversity", "evaluate")


def experiment_name(prefix: str, stage: str) -> str:
    return f"{prefix}-{stage}"


def preload() -> None:
    """Import MLflow's client and SQL store now (~2 s), e.g. while a job's imports run without the
    garbage collector (cli._imported)."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    from mlflow.tracking import MlflowClient  # noqa: F401


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


class TrackingError(RuntimeError):
    pass


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URI; None otherwise."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) and uri[len(prefix):] not in ("", ":memory:") else None


def _database_problem(path: Path) -> str | None:
    """Why an existing file is not an MLflow database: empty, not SQLite, unreadable, or without runs table."""
    import sqlite3

    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\0":
            return "is not an SQLite database"
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        return f"cannot be opened ({e})"
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        check = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        return f"is malformed ({e})"
    finally:
        con.close()
    if check != [("ok",)]:
        return f"is malformed (SQLite integrity check: {check[0][0]})"
    return None if "runs" in tables else "holds no MLflow tables"


def results_with_runs(results="results", limit: int = 3) -> list[Path]:
    """Up to ``limit`` result files under ``results`` that name an MLflow run (``run_id``)."""
    from ..io import read_json

    found = []
    root = Path(results)
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        if "history" in path.relative_to(root).parts[:1]:
            continue
        try:
            if "run_id" in read_json(path):
                found.append(path)
        except (OSError, ValueError):  # a damaged result (DamagedFile) names no run: the scan goes on
            continue
        if len(found) >= limit:
            break
    return found


def check_database(cfg: dict, results=None) -> None:
    """Refuse to start a new run history over an old one: the SQLite file of ``tracking_uri`` must be a
    readable MLflow database, or absent/empty only while no result file under ``results`` (default: the
    ``results`` folder beside the database, the project root) names a run. Raises TrackingError naming
    the file and what to do."""
    path = _sqlite_path(cfg["tracking_uri"])
    if path is None:
        return
    results = Path(results) if results is not None else path.parent / "results"
    problem = "does not exist" if not path.exists() else _database_problem(path)
    if problem is None:
        return
    refs = results_with_runs(results)
    fresh = problem in ("does not exist", "is empty (0 bytes)")
    if fresh and not refs:
        return  # a new project: MLflow creates its tables
    msg = f"the MLflow database {path} {problem}"
    if refs:
        msg += (f", but result files refer to runs in it (e.g. {', '.join(map(str, refs))}). Restore {path} "
                f"from a backup (or from where it was copied), or move it and {results}/ aside to start a new "
                "history; nothing was run")
    else:
        msg += ". Move it aside (or restore it from a backup) and start again; nothing was run"
    raise TrackingError(msg)


def init_tracking(cfg: dict, results=None) -> dict[str, str]:
    """Check the database (``check_database``), create it and every stage's experiment; return name -> id."""
    check_database(cfg, results)
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


# Each run records the process that owns it, so a later workflow can tell a live run from one whose
# job was killed outright (SIGKILL, a lost machine) and never ended it.
OWNER_TAGS = ("divdistill.host", "divdistill.pid", "divdistill.pid_start")


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): tells a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def owner_tags() -> dict[str, str]:
    pid = os.getpid()
    return dict(zip(OWNER_TAGS, (socket.gethostname(), str(pid), str(_process_start(pid)))))


def owner_alive(tags: dict) -> bool | None:
    """Whether the process that started a run still runs: True/False on this host, None when the run was
    started on another host (or before runs recorded their owner for the host part)."""
    host, pid, start = (tags.get(k) for k in OWNER_TAGS)
    if pid is None:
        return False  # a run of a version that did not record its owner: nothing can own it now
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    now = _process_start(int(pid))
    return now is not None and (start in (None, "None") or now == start)


def close_stale_runs(cfg: dict) -> tuple[int, int]:
    """Mark KILLED every divdistill run still RUNNING whose process is gone; returns (closed, left).

    Called when a workflow starts. Snakemake only locks overlapping outputs, so another workflow may be
    running jobs in this project right now: a run is closed only when it was started on this host and
    its process (pid and start time) no longer exists. Runs started on other hosts (cluster jobs) are
    left alone and counted in ``left``."""
    client = _client(cfg["tracking_uri"])
    ids = [e.experiment_id for stage in STAGES
           if (e := _retry(client.get_experiment_by_name, experiment_name(cfg["experiment_prefix"], stage)))]
    if not ids:
        return 0, 0
    running = _retry(client.search_runs, ids, filter_string="attributes.status = 'RUNNING'", max_results=10000)
    closed = left = 0
    for run in running:
        alive = owner_alive(run.data.tags)
        if alive is False:
            _retry(client.set_tag, run.info.run_id, "divdistill.closed",
                   "found RUNNING with its process gone when a later workflow started")
            _retry(client.set_terminated, run.info.run_id, status="KILLED")
            closed += 1
        elif alive is None:
            left += 1
    return closed, left


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
