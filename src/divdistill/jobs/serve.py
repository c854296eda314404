"""divdistill serve: the job server a local workflow's jobs run in (jobserver.py); the Snakefile's
onstart starts it."""

from __future__ import annotations

from .common import REQ

ARGS = ((["--socket"], {**REQ, "help": "path of the Unix socket to listen on (its folder: this user's only)"}),)


def run(args) -> None:
    from ..runtime.jobserver import serve

    serve(args.socket, args.main)  # cli.main: each forked child runs its job as a process would
