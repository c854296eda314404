"""divdistill parents: one MLflow parent run per table cell with its seed runs nested below
(tracking/parents.py); writes {experiment_id, parents: {"dataset/method/ipc/model/protocol": run id}}."""

from __future__ import annotations

from .common import REQ, TRACKING, imported, json_arg, tracking

ARGS = ((["--spec"], {**REQ, "help": "JSON with params.yaml's tables, ipc, seeds, ..."}),
        (["--results"], {"nargs": "*", "default": []}), (["--out"], REQ), TRACKING)


def run(args) -> None:
    from ..experiment import methods
    from ..io import read_json, write_json
    from ..report.aggregate import aggregate, parent_cells
    from ..report.compare import comparisons
    from ..report.robust import scores
    from ..tracking.parents import nest_seed_runs

    imported()
    spec = json_arg(args.spec)
    methods.use(spec)
    agg = aggregate([read_json(p) for p in args.results])
    experiment_id, parents = nest_seed_runs(tracking(args), parent_cells(spec, agg, comparisons(spec, agg),
                                                                                scores(spec, agg)))
    write_json(args.out, {"experiment_id": experiment_id, "parents": {"/".join(k): v for k, v in parents.items()}})
