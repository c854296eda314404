"""params.yaml: the experiment grid and the checks a schema cannot express.

The JSON schema (``workflow/schemas/params.schema.yaml``) checks types, ranges and
unknown keys; ``check`` below checks relations between keys (an IPC larger than a
class holds, a test model without a size). Both run before any job starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .data import DATASETS
from .reported import REPORTED_METHODS

# The paper's column order (Table 1), then Table 3's ablation pairs. IDC-1 is never
# run: it appears only as published numbers (``tables.<t>.reported``, see reported.py).
METHOD_ORDER = ("random", "kcenter", "herding", "dit", "dm", "minimax", "ours",
                "realmin-genmin", "realmin-genmax", "realmax-genmin", "full")
COLUMN_ORDER = ("random", "kcenter", "herding", "dit", "dm", "idc-1", "minimax", "ours",
                "realmin-genmin", "realmin-genmax", "realmax-genmin", "full")
SELECTION_METHODS = ("random", "kcenter", "herding")
FEATURE_METHODS = ("kcenter", "herding")  # selections that need the feature extractor
SYNTHESIS_METHODS = ("dm",)  # optimised per IPC: one set per (IPC, seed), not nested prefixes
# Generative methods: (real-memory, generative-memory) eviction of the fine-tuning,
# None for the pretrained DiT sampled as is. "ours" is Table 3's (max, max) cell.
GENERATIVE_METHODS = {
    "dit": None,
    "minimax": ("fifo", "fifo"),
    "ours": ("max", "max"),
    "realmin-genmin": ("min", "min"),
    "realmin-genmax": ("min", "max"),
    "realmax-genmin": ("max", "min"),
}
FINETUNED_METHODS = tuple(m for m, ev in GENERATIVE_METHODS.items() if ev is not None)
FULL_IPC = "all"  # the ipc wildcard of the Full method: the whole training set


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Cell:
    """One evaluation job: a grid cell of params.yaml."""

    dataset: str
    method: str
    ipc: str  # "10", "20", ... or FULL_IPC
    model: str
    distill_seed: int  # the fine-tuning's seed; 0 for methods that fine-tune nothing
    seed: int

    @property
    def path(self) -> str:
        return (f"results/eval/{self.dataset}/{self.method}/ipc{self.ipc}/{self.model}/"
                f"distill{self.distill_seed}-seed{self.seed}.json")


def load(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    with open(path) as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(cfg).__name__}")
    return cfg


def ipcs_for(cfg: dict, method: str) -> list[str]:
    return [FULL_IPC] if method == "full" else [str(i) for i in cfg["ipc"]]


def distill_seeds_for(cfg: dict, method: str) -> list[int]:
    return list(cfg["distill_seeds"]) if method in FINETUNED_METHODS else [0]


def table_cells(cfg: dict, table: str) -> list[Cell]:
    t = cfg["tables"][table]
    return [Cell(d, m, ipc, model, ds, seed)
            for d in t["datasets"] for m in t["methods"] for ipc in ipcs_for(cfg, m)
            for model in t["models"] for ds in distill_seeds_for(cfg, m) for seed in cfg["seeds"]]


def cells(cfg: dict) -> list[Cell]:
    """Every evaluation job of the config, each once, in table order."""
    seen = {}
    for table in cfg["tables"]:
        for c in table_cells(cfg, table):
            seen.setdefault(c, None)
    return list(seen)


def datasets_used(cfg: dict) -> list[str]:
    return sorted({d for t in cfg["tables"].values() for d in t["datasets"]})


def epochs_for(cfg: dict, ipc: str) -> int:
    ev = cfg["evaluate"]
    if ipc == FULL_IPC:
        return ev["epochs_full"]
    for rule in ev["epochs"]:  # sorted by max_ipc: the first rule that covers the IPC
        if int(ipc) <= rule["max_ipc"]:
            return rule["epochs"]
    raise ConfigError(f"evaluate.epochs: no entry covers IPC {ipc}")


def check(cfg: dict) -> None:
    """Relations between keys; raises ConfigError naming the key at fault."""
    errors = []
    per_class = cfg["data"]["train_per_class"]
    for i, ipc in enumerate(cfg["ipc"]):
        if ipc > per_class:
            errors.append(f"ipc[{i}] = {ipc} is larger than a class holds (data.train_per_class = {per_class})")
    for key in ("seeds", "distill_seeds"):
        if len(set(cfg[key])) != len(cfg[key]):
            errors.append(f"{key}: duplicate values in {cfg[key]}")
    bounds = [r["max_ipc"] for r in cfg["evaluate"]["epochs"]]
    if bounds != sorted(bounds):
        errors.append(f"evaluate.epochs: max_ipc must increase, got {bounds}")
    elif cfg["ipc"] and max(cfg["ipc"]) > bounds[-1]:
        errors.append(f"evaluate.epochs: largest max_ipc {bounds[-1]} does not cover ipc {max(cfg['ipc'])}")
    for name, t in cfg["tables"].items():
        for d in t["datasets"]:
            if d not in DATASETS:
                errors.append(f"tables.{name}.datasets: unknown dataset {d!r} (known: {', '.join(DATASETS)})")
        for m in t["methods"]:
            if m not in METHOD_ORDER:
                errors.append(f"tables.{name}.methods: unknown method {m!r} (known: {', '.join(METHOD_ORDER)})")
        for m in t.get("reported", []):
            if m not in REPORTED_METHODS:
                errors.append(f"tables.{name}.reported: no published numbers for {m!r} "
                              f"(known: {', '.join(REPORTED_METHODS)})")
        for model in t["models"]:
            if model not in cfg["evaluate"]["nets"]:
                errors.append(f"tables.{name}.models: {model!r} has no entry under evaluate.nets")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
