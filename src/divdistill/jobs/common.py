"""What every job shares: its arguments' parsing and the end of its imports.

Rules pass resolved hyper-parameters as one JSON argument (``--params``), built once from
params.yaml and the wildcards (experiment/names.py, the Snakefile's input functions), so
Snakemake's params trigger re-runs exactly the jobs whose numbers changed.
"""

from __future__ import annotations

import gc
import json
import os

REQ = {"required": True}
TRACKING = (["--tracking"], {"help": "JSON of params.yaml's mlflow section (default: $DIVDISTILL_TRACKING, "
                                     "which the Snakefile sets)"})
THREADS = (["--threads"], {"type": int, "default": 1})
DEVICE = (["--device"], {"default": "auto", "help": "auto (CUDA when present), cpu, cuda, cuda:N"})
SEEDS = (["--seeds"], {"type": int, "nargs": "+", **REQ})


def imported(threads: int | None = None, mlflow: bool = True) -> None:
    """A job's imports are done (torch, diffusers, and MLflow's client here when the job logs a run,
    ~2 s: ``mlflow=False`` for the jobs that write files only): set torch's threads and, in a
    ``divdistill`` process (cli.main turned the cyclic garbage collector off for the imports), freeze
    the millions of objects the imports built (no collection walks them again, and the interpreter's
    exit skips them) and turn the collector back on. Measured: 1.7 s less import time and 1.2 s less
    exit per generator job (of ~7 s start-up)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if mlflow:
        from ..tracking.store import preload

        preload()
    if not gc.isenabled():  # a process of its own; a caller's (tests') collector is left alone
        gc.freeze()
        gc.enable()


def _no_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def tracking(args) -> dict:
    """The MLflow settings: --tracking, else $DIVDISTILL_TRACKING, read when the job runs (a job
    server's child gets its client's environment after the imports)."""
    text = args.tracking if args.tracking is not None else os.environ.get("DIVDISTILL_TRACKING")
    if text is None:
        raise SystemExit("missing --tracking (or $DIVDISTILL_TRACKING): run the job through Snakemake")
    return json_arg(text)


def json_arg(text: str) -> dict:
    """A JSON argument; NaN and Infinity (which Python's json reads by default) are refused."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as e:  # JSONDecodeError is a ValueError
        raise SystemExit(f"invalid JSON argument: {e}: {text[:200]}")


def pair_up(what: dict) -> None:
    """Refuse per-seed argument lists of different lengths ({"--seeds": [...], "--out": [...]})."""
    if len({len(v) for v in what.values()}) > 1:
        raise SystemExit(" and ".join(f"{k} ({len(v)})" for k, v in what.items()) + " must pair up")


def log_every(run, every: int):
    """on_step callback logging every ``every``-th step's numeric metrics."""
    def log(step: int, metrics: dict) -> None:
        if step % every == 0:
            run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)
    return log
