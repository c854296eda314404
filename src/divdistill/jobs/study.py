"""divdistill study: the mechanism study's tables, contrasts and figure (report/study.py)."""

from __future__ import annotations

from .common import REQ, imported, json_arg

ARGS = ((["--spec"], {**REQ, "help": "JSON with params.yaml's study, ipc, seeds, finetune, sample"}),
        (["--results"], {"nargs": "+", **REQ}), (["--diversity"], {"nargs": "*", "default": []}), (["--out"], REQ))


def run(args) -> None:
    from ..experiment import methods
    from ..report.study import render

    imported(mlflow=False)
    spec = json_arg(args.spec)
    methods.use(spec)
    render(spec, args.results, args.diversity, args.out)
