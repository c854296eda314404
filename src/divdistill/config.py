"""params.yaml: the experiment grid and the checks a schema cannot express.

The JSON schema (``workflow/schemas/params.schema.yaml``) checks types, ranges and
unknown keys; ``check`` below checks relations between keys (an IPC larger than a
class holds, a test model without a size). Both run before any job starts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .data import DATASETS
from .reported import REPORTED_METHODS

# The paper's column order (Table 1), then Table 3's ablation pairs. IDC-1 is never
# run: it appears only as published numbers (``tables.<t>.reported``, see reported.py).
METHOD_ORDER = ("random", "kcenter", "herding", "dit", "dm", "minimax", "ours", "ours-paper-code",
                "realmin-genmin", "realmin-genmax", "realmax-genmin", "full")
COLUMN_ORDER = ("random", "kcenter", "herding", "dit", "dm", "idc-1", "minimax", "ours", "ours-paper-code",
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
    "ours-paper-code": ("max", "max"),  # Ours with the memory terms weighted as the paper's code does
    "realmin-genmin": ("min", "min"),
    "realmin-genmax": ("min", "max"),
    "realmax-genmin": ("max", "min"),
}
FINETUNED_METHODS = tuple(m for m, ev in GENERATIVE_METHODS.items() if ev is not None)
# Fine-tuning settings a method fixes over params.yaml's finetune section.
METHOD_FINETUNE = {"ours-paper-code": {"memory_weighting": "paper_code"}}  # losses.memory_loss


def finetune_settings(finetune: dict, method: str) -> dict:
    """The finetune section as one fine-tuned method (or sweep variant) runs it: the method's own
    settings (METHOD_FINETUNE), then a sweep variant's value, over params.yaml's."""
    base, overrides = split_method(method)
    return {**finetune, **METHOD_FINETUNE.get(base, {}), **overrides}
FULL_IPC = "all"  # the ipc wildcard of the Full method: the whole training set

# Figure 4: a fine-tuned method with one hyper-parameter moved off its finetune value is a
# method of its own, named "<method>-<key>-<value>" (e.g. "ours-lambda_gen-0.032"), so every
# path, wildcard, MLflow run and table keeps one name for it.
SWEEP_KEYS = ("lambda_real", "lambda_gen", "memory_size")
VARIANT_RE = re.compile(r"^(?P<base>[a-z0-9-]+?)-(?P<key>" + "|".join(SWEEP_KEYS) + r")-(?P<value>[0-9.e+-]+)$")


def variant_name(method: str, key: str, value) -> str:
    return f"{method}-{key}-{value}"


def split_method(name: str) -> tuple[str, dict]:
    """(base method, finetune overrides): "ours-memory_size-16" -> ("ours", {"memory_size": 16})."""
    m = VARIANT_RE.match(name)
    if m is None:
        return name, {}
    value = float(m["value"]) if m["key"].startswith("lambda") else int(m["value"])
    return m["base"], {m["key"]: value}


def base_method(name: str) -> str:
    return split_method(name)[0]


def finetuned_method_pattern() -> str:
    """Wildcard regex of every fine-tuned method name, sweep variants included."""
    return rf"({'|'.join(FINETUNED_METHODS)})(-({'|'.join(SWEEP_KEYS)})-[0-9.e+-]+)?"


def generative_method_pattern() -> str:
    return rf"dit|{finetuned_method_pattern()}"


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


def seeds_for(cfg: dict, method: str) -> list[int]:
    """The evaluation seeds of a method: all of ``seeds``, but for Full (an upper bound, compared with
    nothing) only the first ``evaluate.seeds_full`` of them when that is set."""
    n = cfg["evaluate"].get("seeds_full") if method == "full" else None
    return list(cfg["seeds"]) if n is None else list(cfg["seeds"])[:n]


def distill_seeds_for(cfg: dict, method: str) -> list[int]:
    return list(cfg["distill_seeds"]) if base_method(method) in FINETUNED_METHODS else [0]


def sweep_points(cfg: dict) -> list[tuple[str, object, str]]:
    """(key, value, method name) of every Figure 4 point; the point at the finetune value is the
    base method itself (its Table 1 runs are reused)."""
    sw = cfg.get("sweeps")
    if not sw:
        return []
    points = []
    for key in SWEEP_KEYS:
        for value in sw.get(key, []):
            same = value == cfg["finetune"][key]
            points.append((key, value, sw["method"] if same else variant_name(sw["method"], key, value)))
    return points


def sweep_cells(cfg: dict) -> list[Cell]:
    sw = cfg.get("sweeps")
    if not sw:
        return []
    return [Cell(sw["dataset"], m, str(ipc), sw["model"], ds, seed)
            for _, _, m in sweep_points(cfg) for ipc in cfg["ipc"]
            for ds in distill_seeds_for(cfg, m) for seed in seeds_for(cfg, m)]


def table_cells(cfg: dict, table: str) -> list[Cell]:
    t = cfg["tables"][table]
    return [Cell(d, m, ipc, model, ds, seed)
            for d in t["datasets"] for m in t["methods"] for ipc in ipcs_for(cfg, m)
            for model in t["models"] for ds in distill_seeds_for(cfg, m) for seed in seeds_for(cfg, m)]


def cells(cfg: dict) -> list[Cell]:
    """Every evaluation job of the config, each once: table order, then the sweeps."""
    seen = {}
    for table in cfg["tables"]:
        for c in table_cells(cfg, table):
            seen.setdefault(c, None)
    for c in sweep_cells(cfg):
        seen.setdefault(c, None)
    return list(seen)


def datasets_used(cfg: dict) -> list[str]:
    used = {d for t in cfg["tables"].values() for d in t["datasets"]}
    if cfg.get("sweeps"):
        used.add(cfg["sweeps"]["dataset"])
    return sorted(used)


def epochs_for(cfg: dict, ipc: str) -> int:
    ev = cfg["evaluate"]
    if ipc == FULL_IPC:
        return ev["epochs_full"]
    for rule in ev["epochs"]:  # sorted by max_ipc: the first rule that covers the IPC
        if int(ipc) <= rule["max_ipc"]:
            return rule["epochs"]
    raise ConfigError(f"evaluate.epochs: no entry covers IPC {ipc}")


def datasets_prepared(cfg: dict) -> list[str]:
    """Every dataset a job reads: the tables' and, for the demo, the pretraining set."""
    used = set(datasets_used(cfg))
    if cfg["generator"]["pretrain"]:
        used.add(cfg["pretrain"]["dataset"])
    return sorted(used)


FASHION_SIZES = {"train": 6000, "test": 1000}  # images per class in Fashion-MNIST


def prepare_args(cfg: dict, dataset: str) -> dict:
    """Keyword arguments of ``data.prepare`` for one dataset, from the data section."""
    d, source = cfg["data"], DATASETS[dataset].source
    common = {k: d[k] for k in ("train_per_class", "test_per_class", "split_seed")}
    if source == "fashion-mnist":
        return {"root": d["fashion_root"], **common}
    return {"root": d["imagenet_root"], "layout": d.get("imagenet_layout", "imagenet"), **common}


def missing_inputs(cfg: dict) -> list[str]:
    """Every missing dataset file or weight folder the config needs, each with how to obtain it.
    Cheap (folder listings and config.json files): run before any job starts."""
    from .data import check_fashion_root
    from .imagenet import check_imagenet_root

    d, problems = cfg["data"], []
    for name in datasets_prepared(cfg):
        spec = DATASETS[name]
        if spec.source == "fashion-mnist":
            problems += [p for p in check_fashion_root(d["fashion_root"]) if p not in problems]
        else:
            per_class = {"train": d["train_per_class"], "test": d["test_per_class"]}
            found = check_imagenet_root(spec, d["imagenet_root"], d.get("imagenet_layout", "imagenet"), per_class,
                                        ipc=max(cfg["ipc"]) if cfg["ipc"] and name in datasets_used(cfg) else None)
            problems += [p for p in found if p not in problems]  # the how-to line once
    gen = cfg["generator"]
    if not gen["pretrain"]:
        from .weights import check_weights

        labels = sorted({y for name in datasets_prepared(cfg) for y in DATASETS[name].labels})
        specs = [DATASETS[name] for name in datasets_prepared(cfg)]
        problems += check_weights(gen["dit"], gen["vae"], gen["vae_decoder"], labels=labels,
                                  resolution=specs[0].resolution if specs else None,
                                  channels=specs[0].channels if specs else None)
    return problems


def non_finite(obj, key: str = "") -> list[str]:
    """Every number in a (nested) config that is nan or infinite, by key path. JSON schema's bounds
    cannot reject these (every comparison with nan is false), so this runs beside the schema."""
    if isinstance(obj, dict):
        return [k for name, v in obj.items() for k in non_finite(v, f"{key}.{name}" if key else str(name))]
    if isinstance(obj, (list, tuple)):
        return [k for i, v in enumerate(obj) for k in non_finite(v, f"{key}[{i}]")]
    if isinstance(obj, float) and not math.isfinite(obj):
        return [f"{key} = {obj}: must be a finite number"]
    return []


def check_finite(cfg: dict) -> None:
    if errors := non_finite(cfg):
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))


def check(cfg: dict) -> None:
    """Relations between keys; raises ConfigError naming the key at fault."""
    check_finite(cfg)
    errors = []
    per_class = cfg["data"]["train_per_class"]
    for i, ipc in enumerate(cfg["ipc"]):
        if per_class is not None and ipc > per_class:
            errors.append(f"ipc[{i}] = {ipc} is larger than a class holds (data.train_per_class = {per_class})")
    sources = {DATASETS[n].source for n in datasets_prepared(cfg) if n in DATASETS}
    root_key = {"fashion-mnist": "fashion_root", "imagenet": "imagenet_root"}
    for source in sorted(sources):
        if root_key[source] not in cfg["data"]:
            errors.append(f"data.{root_key[source]}: required by the {source} datasets in tables/pretrain")
    if "fashion-mnist" in sources:
        for split, most in FASHION_SIZES.items():
            n = cfg["data"][f"{split}_per_class"]
            if n is None or n > most:
                errors.append(f"data.{split}_per_class = {n}: Fashion-MNIST holds {most} {split} images per class")
    for key in ("seeds", "distill_seeds"):
        if len(set(cfg[key])) != len(cfg[key]):
            errors.append(f"{key}: duplicate values in {cfg[key]}")
    n_full = cfg["evaluate"].get("seeds_full")
    if n_full is not None and n_full > len(cfg["seeds"]):
        errors.append(f"evaluate.seeds_full = {n_full}: more than the {len(cfg['seeds'])} seeds there are")
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
    if cfg["generator"]["pretrain"] and cfg["pretrain"]["dataset"] not in DATASETS:
        errors.append(f"pretrain.dataset: unknown dataset {cfg['pretrain']['dataset']!r} (known: {', '.join(DATASETS)})")
    sw = cfg.get("sweeps")
    if sw:
        if sw["dataset"] not in DATASETS:
            errors.append(f"sweeps.dataset: unknown dataset {sw['dataset']!r}")
        if sw["method"] not in FINETUNED_METHODS:
            errors.append(f"sweeps.method: {sw['method']!r} is not fine-tuned (one of {', '.join(FINETUNED_METHODS)})")
        if sw["model"] not in cfg["evaluate"]["nets"]:
            errors.append(f"sweeps.model: {sw['model']!r} has no entry under evaluate.nets")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
