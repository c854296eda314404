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

from ..data.datasets import DATASETS
from ..baselines.reported import REPORTED_METHODS

# The paper's column order (Table 1), then Table 3's ablation pairs. IDC-1 is never
# run: it appears only as published numbers (``tables.<t>.reported``, see reported.py).
METHOD_ORDER = ("random", "kcenter", "herding", "dit", "dm", "difffit", "minimax", "ours", "ours-paper-code",
                "realmin-genmin", "realmin-genmax", "realmax-genmin", "full")
COLUMN_ORDER = ("random", "kcenter", "herding", "dit", "dm", "idc-1", "difffit", "minimax", "ours", "ours-paper-code",
                "realmin-genmin", "realmin-genmax", "realmax-genmin", "full")
SELECTION_METHODS = ("random", "kcenter", "herding")
FEATURE_METHODS = ("kcenter", "herding")  # selections that need the feature extractor
SYNTHESIS_METHODS = ("dm",)  # optimised per IPC: one set per (IPC, seed), not nested prefixes
# Generative methods: (real-memory, generative-memory) eviction of the fine-tuning,
# None for the pretrained DiT sampled as is. "ours" is Table 3's (max, max) cell.
GENERATIVE_METHODS = {
    "dit": None,
    "difffit": ("fifo", "fifo"),  # the no-memory control: memories kept and logged, their terms weighted 0
    "minimax": ("fifo", "fifo"),
    "ours": ("max", "max"),
    "ours-paper-code": ("max", "max"),  # Ours with the memory terms weighted as the paper's code does
    "realmin-genmin": ("min", "min"),
    "realmin-genmax": ("min", "max"),
    "realmax-genmin": ("max", "min"),
}
FINETUNED_METHODS = tuple(m for m, ev in GENERATIVE_METHODS.items() if ev is not None)
# Fine-tuning settings a method fixes over params.yaml's finetune section.
METHOD_FINETUNE = {"ours-paper-code": {"memory_weighting": "paper_code"},  # losses.memory_loss
                   "difffit": {"lambda_real": 0.0, "lambda_gen": 0.0}}  # DiffFit alone: same steps, no memory terms


FULL_IPC = "all"  # the ipc wildcard of the Full method: the whole training set

# Variants. A method with settings moved off params.yaml's values is a method of its own, named
# "<method>-<key>-<value>[-<key>-<value>...]" (Figure 4's "ours-lambda_gen-0.032", the study's
# "ours-max_steps-5000-guidance-2"), so every path, wildcard, MLflow run and table keeps one name
# for it. Each key belongs to one section: a finetune key makes a model of its own, a sample key
# samples the same fine-tuned model differently. Keys appear in this order.
VARIANT_KEYS = {"lambda_real": ("finetune", float), "lambda_gen": ("finetune", float),
                "memory_size": ("finetune", int), "max_steps": ("finetune", int), "guidance": ("sample", float)}
SWEEP_KEYS = ("lambda_real", "lambda_gen", "memory_size")  # Figure 4's hyper-parameters
_KEYS = "|".join(VARIANT_KEYS)
_NUMBER = r"[0-9][0-9.e+-]*?"
VARIANT_RE = re.compile(rf"^(?P<base>[a-z0-9-]+?)(?P<parts>(?:-(?:{_KEYS})-{_NUMBER})*)$")
_PART_RE = re.compile(rf"-(?P<key>{_KEYS})-(?P<value>{_NUMBER})(?=-(?:{_KEYS})-|$)")


def _number(value) -> str:
    """One spelling per value: 2, 2.0 and 2e0 are all "2"; 0.032 stays "0.032", 1e39 "1e+39"."""
    v = float(value)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def variant_name(method: str, key: str | None = None, value=None, **more) -> str:
    """``method`` with settings overridden, keys in VARIANT_KEYS order: variant_name("ours",
    "lambda_gen", 0.032) or variant_name("ours", max_steps=5000, guidance=2)."""
    base, overrides = split_method(method)
    overrides = {**overrides, **({key: value} if key is not None else {}), **more}
    unknown = set(overrides) - set(VARIANT_KEYS)
    if unknown:
        raise ValueError(f"not a variant key: {', '.join(sorted(unknown))} (known: {', '.join(VARIANT_KEYS)})")
    return base + "".join(f"-{k}-{_number(overrides[k])}" for k in VARIANT_KEYS if k in overrides)


def split_method(name: str) -> tuple[str, dict]:
    """(base method, overrides): "ours-memory_size-16" -> ("ours", {"memory_size": 16});
    "ours-max_steps-5000-guidance-2" -> ("ours", {"max_steps": 5000, "guidance": 2.0})."""
    m = VARIANT_RE.match(name)
    if m is None or not m["parts"]:
        return name, {}
    return m["base"], {p["key"]: VARIANT_KEYS[p["key"]][1](float(p["value"])) for p in _PART_RE.finditer(m["parts"])}


def base_method(name: str) -> str:
    return split_method(name)[0]


def section_overrides(method: str, section: str) -> dict:
    """The overrides of a variant that belong to one section ("finetune" or "sample")."""
    return {k: v for k, v in split_method(method)[1].items() if VARIANT_KEYS[k][0] == section}


def finetuned_name(method: str) -> str:
    """The fine-tuned model a generative method samples from: its name without the sample keys
    ("ours-max_steps-5000-guidance-2" -> "ours-max_steps-5000")."""
    return variant_name(base_method(method), **section_overrides(method, "finetune"))


def finetune_settings(finetune: dict, method: str) -> dict:
    """The finetune section as one fine-tuned method (or variant) runs it: the method's own
    settings (METHOD_FINETUNE), then a variant's values, over params.yaml's."""
    return {**finetune, **METHOD_FINETUNE.get(base_method(method), {}), **section_overrides(method, "finetune")}


def sample_settings(sample: dict, method: str) -> dict:
    """The sample section as one generative method (or variant) samples: a variant's values over
    params.yaml's."""
    return {**sample, **section_overrides(method, "sample")}


def _keys_of(section: str) -> str:
    return "|".join(k for k, (s, _) in VARIANT_KEYS.items() if s == section)


def finetuned_method_pattern() -> str:
    """Wildcard regex of every fine-tuned model's name: a fine-tuned method with finetune keys."""
    return rf"({'|'.join(FINETUNED_METHODS)})(-({_keys_of('finetune')})-[0-9][0-9.e+-]*)*"


def generative_method_pattern() -> str:
    """Wildcard regex of every sampled method's name: DiT with sample keys, or a fine-tuned model
    with sample keys."""
    sample = rf"(-({_keys_of('sample')})-[0-9][0-9.e+-]*)*"
    return rf"(dit|{finetuned_method_pattern()}){sample}"


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
    n = cfg.get("evaluate", {}).get("seeds_full") if method == "full" else None
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


def study_points(cfg: dict) -> list[dict]:
    """Every point of the study grid: {"method", "max_steps", "guidance", "name"} in the study's
    method order, then length, then guidance. max_steps is None for DiT (nothing is fine-tuned);
    a value equal to params.yaml's keeps the base name, so the demo's runs are shared."""
    st = cfg.get("study")
    if not st:
        return []
    points = []
    for m in st["methods"]:
        tuned = GENERATIVE_METHODS[m] is not None
        for steps in st["max_steps"] if tuned else [None]:
            for g in st["guidance"]:
                over = {}
                if steps is not None and steps != cfg["finetune"].get("max_steps"):
                    over["max_steps"] = steps
                if float(g) != float(cfg["sample"]["guidance"]):
                    over["guidance"] = g
                points.append({"method": m, "max_steps": steps, "guidance": float(g),
                               "name": variant_name(m, **over)})
    return points


def study_distill_seeds(cfg: dict, method: str) -> list[int]:
    return list(cfg["study"]["distill_seeds"]) if base_method(method) in FINETUNED_METHODS else [0]


def study_cells(cfg: dict) -> list[Cell]:
    """Every evaluation of the study: each point at every ipc, distillation seed and seed."""
    st = cfg.get("study")
    if not st:
        return []
    return [Cell(st["dataset"], p["name"], str(ipc), st["model"], ds, seed)
            for p in study_points(cfg) for ipc in cfg["ipc"]
            for ds in study_distill_seeds(cfg, p["name"]) for seed in cfg["seeds"]]


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
    for extra in ("sweeps", "study"):
        if cfg.get(extra):
            used.add(cfg[extra]["dataset"])
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
    from ..data.datasets import check_fashion_root
    from ..data.imagenet import check_imagenet_root

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
        from ..generator.weights import check_weights

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
    st = cfg.get("study")
    if st:
        if st["dataset"] not in DATASETS:
            errors.append(f"study.dataset: unknown dataset {st['dataset']!r} (known: {', '.join(DATASETS)})")
        if st["model"] not in cfg["evaluate"]["nets"]:
            errors.append(f"study.model: {st['model']!r} has no entry under evaluate.nets")
        elif per_class is not None and st["dataset"] in DATASETS:  # more steps than epochs hold would be a
            ft = cfg["finetune"]                                    # second name for the same run
            most = ft["epochs"] * (per_class * len(DATASETS[st["dataset"]].class_ids) // ft["batch_size"])
            for steps in st["max_steps"]:
                if steps > most:
                    errors.append(f"study.max_steps: {steps} is more than finetune.epochs' worth on "
                                  f"{st['dataset']} ({most} steps of {ft['batch_size']})")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
