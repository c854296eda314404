"""divdistill verify: the rendered tables against the result files they were made from.

Each table cell's evaluation JSONs (and the diversity table's measures) were hashed when the tables were
rendered (results/evidence.json); any missing or changed since is named with its cell, and the command
that rebuilds it. Exit status 1 when any is.
"""

from __future__ import annotations

from ..experiment.grid import EVIDENCE

ARGS = ((["--evidence"], {"default": EVIDENCE, "help": f"the render job's record (default: {EVIDENCE})"}),)


def run(args) -> None:
    from ..report.evidence import verify

    ok, report = verify(args.evidence)
    print(report)
    if not ok:
        raise SystemExit(1)
