"""params.yaml: loading and the checks a schema cannot express.

The JSON schema (``workflow/schemas/params.schema.yaml``) checks types, ranges and unknown keys;
``check`` below checks names against the name tables (methods.py, the datasets, the test networks,
the eviction rules) and relations between keys (an IPC larger than a class holds, a test model
without a size). Both run before any job starts.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

from ..baselines.reported import REPORTED_METHODS
from ..data import folders
from ..data.registry import DATASETS
from ..io import DamagedFile, read_yaml
from . import methods
from .extensions import extension_errors, synthesis_errors
from .folder_checks import folder_errors
from .grid import ConfigError, datasets_prepared, datasets_used


def load(path) -> dict:
    """A configuration file; a syntax error is one line, ``params.yaml:5:6: YAML syntax error: ...``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    try:
        cfg = read_yaml(path)
    except DamagedFile as e:
        raise ConfigError(str(e)) from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(cfg).__name__}")
    return cfg


SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "params.schema.yaml"


def schema_errors(cfg: dict, files=("params.yaml",), schema=SCHEMA) -> list[str]:
    """One line per place where ``cfg`` breaks the JSON schema, prefixed by the file (of ``files``, the
    merged configuration's sources, last overlay first) that holds the key at fault, e.g.
    ``params.yaml: unknown key 'finetun' (did you mean 'finetune'?)``; no dump of the schema."""
    import jsonschema

    sources = [(str(f), _load_quietly(f)) for f in reversed([str(f) for f in files])]
    validator = jsonschema.Draft202012Validator(read_yaml(schema))
    lines, meant = [], set()  # meant: (where, key) a misspelt key stood for; its "required" error is that one
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (e.validator == "required", [str(p) for p in e.absolute_path]))
    for e in errors:
        where = list(e.absolute_path)
        if e.validator == "additionalProperties":
            allowed = list(e.schema.get("properties", {}))
            for key in sorted(set(e.instance) - set(allowed)):
                near = difflib.get_close_matches(str(key), allowed, n=1)
                meant.update((tuple(where), n) for n in near)
                hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(allowed)})"
                lines.append(f"{_source(sources, [*where, key])}: {_dotted(where)}unknown key {key!r}{hint}")
        elif not (e.validator == "required" and any((tuple(where), k) in meant for k in e.validator_value)
                  and all(k in e.instance or (tuple(where), k) in meant for k in e.validator_value)):
            lines.append(f"{_source(sources, where)}: {_dotted(where)}{e.message}")
    return lines


def _load_quietly(path):
    try:
        return read_yaml(path)
    except (OSError, ValueError):
        return None


def _source(sources, where: list) -> str:
    """The first of ``sources`` (file, parsed content) that holds the key path ``where``."""
    for name, tree in sources:
        node = tree
        for k in where:
            if isinstance(node, dict) and k in node:
                node = node[k]
            elif isinstance(node, list) and isinstance(k, int) and k < len(node):
                node = node[k]
            else:
                break
        else:
            return name
    return sources[-1][0] if sources else "config"


def _dotted(where: list) -> str:
    path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in where).lstrip(".")
    return f"{path}: " if path else ""



FASHION_SIZES = {"train": 6000, "test": 1000}  # images per class in Fashion-MNIST


def prepare_args(cfg: dict, dataset: str) -> dict:
    """Keyword arguments of ``data.prepare`` for one dataset, from the data section."""
    d, source = cfg["data"], DATASETS[dataset].source
    if source == "folder":
        own = cfg["datasets"][dataset]  # the declaration travels with the job (it registers the dataset)
        return {"root": own["root"], "val_fraction": own.get("val_fraction"), "split_seed": d["split_seed"],
                "folder": own, "images": folders.digest(own["root"])}
    common = {k: d[k] for k in ("train_per_class", "test_per_class", "split_seed")}
    if source == "fashion-mnist":
        return {"root": d["fashion_root"], **common}
    return {"root": d["imagenet_root"], "layout": d.get("imagenet_layout", "imagenet"), **common}


def missing_inputs(cfg: dict) -> list[str]:
    """Every missing or damaged dataset file or weight folder the config needs, each with how to obtain
    it. Cheap (folder listings, config.json files, weights' headers, Fashion-MNIST's four files read
    through once): run before any job starts."""
    from ..data.imagenet import check_imagenet_root
    from ..data.registry import check_fashion_root

    d, problems = cfg["data"], []
    for name in datasets_prepared(cfg):
        spec = DATASETS[name]
        if spec.source == "fashion-mnist":
            problems += [p for p in check_fashion_root(d["fashion_root"], read=True) if p not in problems]
        elif spec.source == "imagenet":
            per_class = {"train": d["train_per_class"], "test": d["test_per_class"]}
            found = check_imagenet_root(spec, d["imagenet_root"], d.get("imagenet_layout", "imagenet"), per_class,
                                        ipc=max(cfg["ipc"]) if cfg["ipc"] and name in datasets_used(cfg) else None)
            problems += [p for p in found if p not in problems]  # the how-to line once
    gen = cfg["generator"]
    if not gen["pretrain"]:
        from ..generator.weights import check_weights

        labels = sorted({y for name in datasets_prepared(cfg) for y in DATASETS[name].labels})
        shapes = sorted({(DATASETS[n].resolution, DATASETS[n].channels) for n in datasets_prepared(cfg)}) or [(None, None)]
        for resolution, channels in shapes:  # every dataset's size and channels, a folder's too
            found = check_weights(gen["dit"], gen["vae"], gen["vae_decoder"], labels=labels, resolution=resolution,
                                  channels=channels)
            problems += [p for p in found if p not in problems]
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


def evaluate_errors(cfg: dict) -> list[str]:
    """Full's seeds exist; the epoch tables cover every IPC; a soft protocol has evaluate.soft."""
    from .grid import protocols_of

    errors, ev = [], cfg["evaluate"]
    n_full = ev.get("seeds_full")
    if n_full is not None and n_full > len(cfg["seeds"]):
        errors.append(f"evaluate.seeds_full = {n_full}: more than the {len(cfg['seeds'])} seeds there are")
    bounds = [r["max_ipc"] for r in ev["epochs"]]
    if bounds != sorted(bounds):
        errors.append(f"evaluate.epochs: max_ipc must increase, got {bounds}")
    elif cfg["ipc"] and max(cfg["ipc"]) > bounds[-1]:
        errors.append(f"evaluate.epochs: largest max_ipc {bounds[-1]} does not cover ipc {max(cfg['ipc'])}")
    used = {p for t in cfg["tables"] for p in protocols_of(cfg, t)}
    if any(p.startswith("soft") for p in used) and "soft" not in ev:
        errors.append("evaluate.soft: required by the soft protocols in " + ", ".join(sorted(used)))
    bounds = [r["max_ipc"] for r in ev.get("soft", {}).get("epochs", [])]
    if bounds and (bounds != sorted(bounds) or (cfg["ipc"] and max(cfg["ipc"]) > bounds[-1])):
        errors.append(f"evaluate.soft.epochs: max_ipc must increase and cover every ipc {cfg['ipc']}, got {bounds}")
    return errors


def check(cfg: dict) -> None:
    """Relations between keys; raises ConfigError naming the key at fault."""
    check_finite(cfg)
    folders.register(cfg.get("datasets"))  # params.yaml's own datasets join the registry first
    errors = folder_errors(cfg)
    per_class = cfg["data"]["train_per_class"]
    for i, ipc in enumerate(cfg["ipc"]):
        if per_class is not None and ipc > per_class:
            errors.append(f"ipc[{i}] = {ipc} is larger than a class holds (data.train_per_class = {per_class})")
    sources = {DATASETS[n].source for n in datasets_prepared(cfg) if n in DATASETS}
    root_key = {"fashion-mnist": "fashion_root", "imagenet": "imagenet_root"}
    for source in sorted(sources - {"folder"}):
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
    errors += evaluate_errors(cfg)
    errors += extension_errors(cfg)
    errors += synthesis_errors(cfg) if not errors else []
    nets = _nets()
    for name in cfg["evaluate"]["nets"]:
        if name not in nets:
            errors.append(f"evaluate.nets.{name}: unknown test network (known: {', '.join(nets)})")
    runnable = methods.run_names()
    for name, t in cfg["tables"].items():
        for d in t["datasets"]:
            if d not in DATASETS:
                errors.append(f"tables.{name}.datasets: unknown dataset {d!r} (known: {', '.join(DATASETS)})")
        for m in t["methods"]:
            if m not in runnable:
                errors.append(f"tables.{name}.methods: unknown method {m!r} (known: {', '.join(runnable)})")
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
        tuned = methods.names(finetuned=True)
        if sw["method"] not in tuned:
            errors.append(f"sweeps.method: {sw['method']!r} is not fine-tuned (one of {', '.join(tuned)})")
        if sw["model"] not in cfg["evaluate"]["nets"]:
            errors.append(f"sweeps.model: {sw['model']!r} has no entry under evaluate.nets")
    st = cfg.get("study")
    if st:
        if st["dataset"] not in DATASETS:
            errors.append(f"study.dataset: unknown dataset {st['dataset']!r} (known: {', '.join(DATASETS)})")
        generative = methods.names("generative")
        for m in st["methods"]:
            if m not in generative:
                errors.append(f"study.methods: {m!r} is not a generative method (one of {', '.join(generative)})")
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


def _nets() -> tuple[str, ...]:
    from ..evaluate.names import NET_LABELS

    return tuple(NET_LABELS)
