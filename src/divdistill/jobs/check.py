"""divdistill check: params.yaml against the schema's relations and every input it needs."""

from __future__ import annotations

ARGS = ((["--config"], {"default": "params.yaml"}),)


def run(args) -> None:
    from ..experiment import config
    from ..experiment.grid import cells

    cfg = config.load(args.config)
    config.check(cfg)
    problems = config.missing_inputs(cfg)
    if problems:
        raise SystemExit(f"{args.config}: missing inputs:\n  " + "\n  ".join(problems))
    print(f"{args.config}: {len(cells(cfg))} evaluation jobs; every input found")
