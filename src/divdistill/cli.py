"""One entry point for every job the workflow runs; each job is one module of ``jobs/``.

    divdistill prepare  --dataset fashion-hard --params '{...}' --out results/data/fashion-hard
    divdistill select   --method random --data results/data/fashion-hard --seeds 0 1 --max-ipc 50 --out A B
    divdistill evaluate --data results/data/fashion-hard --distilled A B --cell '{...}' --seeds 0 1 --out ...
    divdistill render   --spec '{...}' --results ... --tables reports/tables ...
    divdistill check    --config params.yaml
    divdistill verify   # the rendered tables against the result files they were made from
    divdistill serve    --socket /tmp/divdistill-x/jobs.sock   # the job server (runtime/jobserver.py)

A job module holds ``ARGS`` (its argparse arguments) and ``run(args)``, and imports what it needs
inside ``run``: building the parser imports no torch.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import signal
import sys

# command -> module of jobs/
JOBS = {
    "prepare": "prepare", "features": "features", "select": "select", "synthesize": "synthesize",
    "evaluate": "evaluate",
    "pretrain-vae": "pretrain_vae", "pretrain-dit": "pretrain_dit", "encode": "encode", "finetune": "finetune",
    "sample": "sample", "diversity": "diversity", "figure1": "figure1", "parents": "parents", "render": "render",
    "study": "study", "cost": "cost", "check": "check", "verify": "verify", "init-tracking": "init_tracking", "serve": "serve",
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="divdistill", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for command, module in JOBS.items():
        job = importlib.import_module(f".jobs.{module}", __package__)
        p = sub.add_parser(command, help=job.__doc__.split("\n")[0].split(": ", 1)[-1])
        for flags, kw in job.ARGS:
            p.add_argument(*flags, **kw)
        p.set_defaults(fn=job.run)
    return ap


def main(argv=None) -> None:
    # Snakemake stops jobs with SIGTERM: turn it into an exception so MLflow runs end FAILED.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    process = argv is None  # the console script (a process of its own), not a call from Python
    if process:
        from .runtime import jobclient

        status = jobclient.forward(sys.argv[1:])  # a workflow's job server runs it, when there is one
        if status is not None:
            jobclient.exit_like(status)
        gc.disable()  # until the command's imports are done (jobs.common.imported): they only allocate
    args = build_parser().parse_args(argv)
    args.main = main  # the serve command's children run their jobs through this entry point
    try:
        args.fn(args)
    finally:
        if process:
            gc.freeze()  # a quick exit: the final collection skips what the job built


if __name__ == "__main__":
    main()
