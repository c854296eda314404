"""divdistill check: configuration files (params.yaml and overlays, merged as Snakemake merges them)
against the schema and its relations, and every input they need; each problem one line naming its file.

    divdistill check --config params.yaml config/study.yaml
"""

from __future__ import annotations

ARGS = ((["--config"], {"nargs": "+", "default": ["params.yaml"],
                        "help": "params.yaml, then any overlays (as --configfile would give them)"}),)


def run(args) -> None:
    from snakemake.utils import update_config

    from ..experiment import config
    from ..experiment.grid import ConfigError, cells

    try:
        cfg = {}
        for path in args.config:
            update_config(cfg, config.load(path))
        if problems := config.schema_errors(cfg, args.config):
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        config.check(cfg)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    problems = config.missing_inputs(cfg)
    if problems:
        raise SystemExit(f"{' + '.join(args.config)}: missing or damaged inputs:\n  " + "\n  ".join(problems))
    print(f"{' + '.join(args.config)}: {len(cells(cfg))} evaluation jobs; every input found")
