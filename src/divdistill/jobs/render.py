"""divdistill render: every table, the comparisons, curves, Figure 4 and metrics.json from the
result files (report/render.py). Writes no MLflow runs: the table cells' parent runs are the
``parents`` job's, whose file (``--parents``) the HTML tables link from."""

from __future__ import annotations

from .common import REQ, imported, json_arg

ARGS = ((["--spec"], {**REQ, "help": "JSON with params.yaml's tables, ipc, seeds, ..."}),
        (["--results"], {"nargs": "*", "default": []}), (["--diversity"], {"nargs": "*", "default": []}),
        (["--grids"], {"nargs": "*", "default": [], "help": "SRC=DST sample grids to copy"}),
        (["--tables"], REQ), (["--metrics"], REQ), (["--plots"], REQ),
        (["--sweep-plots"], {"default": "reports/plots/sweeps", "help": "Figure 4's points as CSVs (with sweeps)"}),
        (["--teachers"], {"nargs": "*", "default": [], "help": "the soft protocol's teachers' result files"}),
        (["--parents"], {"help": "the parents job's file: cell -> MLflow run (links in the HTML tables)"}),
        (["--evidence"], {"help": "where to record each cell's result files and their sha256 (divdistill verify)"}))


def run(args) -> None:
    from ..data.folders import register
    from ..experiment import methods
    from ..io import read_json
    from ..report.render import render_all

    imported(mlflow=False)
    spec = json_arg(args.spec)
    methods.use(spec)
    register(spec.get("datasets"))  # params.yaml's own datasets: their classes in the tables' notes
    render_all(spec, args.results, args.tables, args.metrics, args.plots, args.diversity,
               dict(g.split("=", 1) for g in args.grids),
               parents=None if args.parents is None else read_json(args.parents), out_sweeps=args.sweep_plots,
               out_evidence=args.evidence, teachers=[read_json(p) for p in args.teachers])
