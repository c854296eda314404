"""params.yaml's folder datasets (data/folders.py) checked before any job: their folders, and the
generator that is to draw their classes.

A folder's K classes are labels 0..K-1. For a generator pretrained on them those are its classes; for
one pretrained on other classes (DiT-XL/2 at paper scale, the demo's DiT pretrained on Fashion-MNIST)
they are the first K rows of its class table, which fine-tuning learns, as Diff-Tuning's DiffFit code
does (docs/protocol.md cites it). The table must hold K rows, and the images must be the size and
channels the generator was trained on.
"""

from __future__ import annotations

import sys

from ..data import folders
from ..data.registry import BUILTIN, DATASETS
from . import methods
from .grid import datasets_prepared, datasets_used
from .jobsets import in_a_table


def folder_errors(cfg: dict) -> list[str]:
    """params.yaml's folder datasets that the run uses: everything wrong with their folders (each naming
    its path, data/folders.py), and a generator that knows their classes. Files that are not images are
    named on stderr and skipped."""
    errors, own = [], cfg.get("datasets") or {}
    errors += [f"datasets.{name}: the name of a built-in dataset; choose another" for name in own if name in BUILTIN]
    for name in [n for n in datasets_prepared(cfg) if n in own and n not in BUILTIN]:
        ipc = max(cfg["ipc"]) if cfg["ipc"] and name in datasets_used(cfg) else None
        problems, notes = folders.check(name, own[name], ipc, cfg["data"]["split_seed"])
        errors += [f"datasets.{name}: {p}" for p in problems]
        for note in notes:
            print(f"datasets.{name}: {note}", file=sys.stderr)
        generative = any(in_a_table(cfg, name, m) for m in methods.names("generative"))
        if generative and not (cfg["generator"]["pretrain"] and cfg["pretrain"]["dataset"] == name):
            errors += class_rows(cfg, name)
    return errors


def class_rows(cfg: dict, name: str) -> list[str]:
    """The folder's classes in the class table of a generator pretrained on other classes: the rows they
    take (said on stderr), or why they cannot (more classes than rows; images of another size or channel
    count than the demo's pretraining set). Missing or damaged weights and an unknown pretraining dataset
    are left to the checks that name them with their remedy."""
    spec = DATASETS[name]
    k = len(spec.class_ids)
    if cfg["generator"]["pretrain"]:
        pre = DATASETS.get(cfg["pretrain"]["dataset"])
        if pre is None:
            return []  # config.check names the unknown pretrain.dataset
        where, rows = f"pretrain.dataset {pre.name}", len(pre.class_ids)
        if (spec.resolution, spec.channels) != (pre.resolution, pre.channels):
            return [f"datasets.{name}: {spec.resolution} px, {spec.channels} channel(s), but the generator is "
                    f"pretrained on {pre.name} at {pre.resolution} px, {pre.channels} channel(s)"]
    else:  # the weights' own size and channels are compared with every dataset's by missing_inputs
        from ..generator.weights import locate, read_config

        folder, _ = locate("dit", cfg["generator"]["dit"])  # a pipeline root or its transformer/
        if folder is None:
            return []
        try:
            where, rows = f"generator.dit {folder}", int(read_config(folder)["num_embeds_ada_norm"])
        except (ValueError, KeyError):  # a DamagedFile is a ValueError
            return []
    if k > rows:
        return [f"datasets.{name}: {k} classes, but the generator's class table ({where}) holds {rows}"]
    print(f"datasets.{name}: its {k} classes take rows 0..{k - 1} of the generator's class table ({where}); "
          "methods that fine-tune learn them, the pretrained DiT's own samples (e.g. dit, mgd3, d4m) are "
          "conditioned on rows trained for other classes", file=sys.stderr)
    return []
