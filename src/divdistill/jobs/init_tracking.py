"""divdistill init-tracking: create mlflow.db and every stage's experiment (tracking/store.py)."""

from __future__ import annotations

ARGS = ((["--config"], {"default": "params.yaml"}),)


def run(args) -> None:
    from ..experiment import config
    from ..tracking.store import init_tracking

    for name, eid in init_tracking(config.load(args.config)["mlflow"]).items():
        print(f"{eid}\t{name}")
