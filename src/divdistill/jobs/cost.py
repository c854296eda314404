"""divdistill cost: what each method's distilled sets cost to build, from the jobs' benchmark records
(report/cost.py): the cost table, its JSON beside metrics.json, and accuracy against cost."""

from __future__ import annotations

from .common import REQ, imported, json_arg

ARGS = ((["--spec"], {**REQ, "help": "JSON with params.yaml's tables, ipc, seeds, threads, ..."}),
        (["--metrics"], {**REQ, "help": "metrics.json (the accuracies the figure plots)"}),
        (["--table"], REQ), (["--json"], REQ), (["--png"], REQ), (["--pdf"], REQ))


def run(args) -> None:
    from ..experiment import methods
    from ..io import read_json, write_json, write_text
    from ..report.cost import cost_figure, costs, render_cost

    imported(mlflow=False)
    spec = json_arg(args.spec)
    methods.use(spec)
    cost = costs(spec)
    write_text(args.table, render_cost(spec, cost))
    write_json(args.json, cost)
    cost_figure(spec, cost, read_json(args.metrics), args.png, args.pdf)
