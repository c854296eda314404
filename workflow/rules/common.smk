# Validation, grid enumeration, input functions and wildcard constraints.
import json
import os
import shlex

from snakemake.utils import validate

from divdistill import config as dd
from divdistill.data import check_fashion_root

# Types, ranges and unknown keys first (the schema), then relations between keys.
validate(config, "../schemas/params.schema.yaml")
try:
    dd.check(config)
except dd.ConfigError as e:
    raise ValueError(str(e)) from None

CELLS = dd.cells(config)
TABLES = list(config["tables"])
# Jobs find the MLflow settings in their environment rather than in params;
# changing where runs are logged must not re-run the experiments.
os.environ.update(DIVDISTILL_TRACKING=json.dumps(config["mlflow"]))


def all_targets():
    return [*expand("reports/tables/{table}.{ext}", table=TABLES, ext=["md", "tex"]), "reports/metrics.json"]


def as_arg(obj):
    """A JSON shell argument; as a rule param its value drives Snakemake's params trigger."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def prepare_params(wildcards):
    missing = check_fashion_root(config["data"]["fashion_root"])
    if missing:
        raise ValueError("data.fashion_root: Fashion-MNIST is missing:\n  " + "\n  ".join(missing))
    return as_arg(config["data"])


def eval_params(wildcards):
    """Every resolved hyper-parameter of one evaluation job."""
    ev = config["evaluate"]
    hp = {k: v for k, v in ev.items() if k not in ("epochs", "epochs_full", "nets", "threads")}
    hp["epochs"] = dd.epochs_for(config, wildcards.ipc)
    hp["net"] = ev["nets"][wildcards.model]
    return as_arg(hp)


def eval_cell(wildcards):
    return as_arg({"dataset": wildcards.dataset, "method": wildcards.method, "ipc": wildcards.ipc,
                   "model": wildcards.model, "seed": int(wildcards.seed)})


def eval_inputs(wildcards):
    data = f"results/data/{wildcards.dataset}"
    inputs = {"meta": f"{data}/meta.json"}
    if wildcards.method != "full":
        inputs["distilled"] = f"results/distilled/{wildcards.dataset}/{wildcards.method}/seed{wildcards.seed}.safetensors"
    return inputs
