"""Your own data: a dataset is a folder of class subfolders (params.yaml ``datasets``; README "Distill
your own data").

    <root>/train/<class>/*.png|jpg|jpeg + <root>/val/<class>/*   val is the test split, or
    <root>/<class>/*                                            split by a seeded fraction (val_fraction)

The class order is the sorted folder names (written into meta.json). Every image is resized and
centre-cropped to the declared resolution as the ImageNet path does (``imagenet.center_crop``) and
converted to the declared channels (1: Pillow's "L", 3: "RGB"); the prepare job's log counts each kind
of conversion. The checks here run before any job (the Snakefile's): they list folders, and decode each
image once, remembering the verdict by file size and modification time (``results/data/.checked``).

    register({"flowers": {"root": "data/flowers", "resolution": 32, "channels": 3, "val_fraction": 0.2}})
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections import Counter
from pathlib import Path

from .registry import BUILTIN, DATASETS, IMAGE_SUFFIXES, DatasetSpec

CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # usable in paths, tables and MLflow params
CHECKED = "results/data/.checked/{name}.json"  # verdicts of the decode check, by path, size and mtime
MODES = {1: "L", 3: "RGB"}


def _images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files sorted by name, every other file) of one class folder; hidden files are ignored."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES], [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]


def layout(root: Path) -> dict[str, Path] | None:
    """{"train": folder, "test": folder} for a root with train/ and val/; None for one level of classes."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        return {"train": root / "train", "test": root / "val"}
    return None


def class_names(root) -> list[str]:
    """The sorted class folders of a root (its train/ ones for a train/ + val/ root), without reading
    their files: what the registry needs at every parse (``scan`` checks them)."""
    root = Path(root)
    lone = layout(root) is None and ((root / "train").is_dir() or (root / "val").is_dir())  # scan names it
    folder = (layout(root) or {"train": root})["train"]
    if lone or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan(root) -> tuple[dict[str, dict[str, list[Path]]], list[Path], list[str]]:
    """({"train"|"all"|"test": {class: image files}}, files that are not images, problems). A root without
    train/ and val/ gives its classes under "all" (split later by val_fraction)."""
    root = Path(root)
    if not root.is_dir():
        return {}, [], [f"{root}: dataset root folder does not exist"]
    splits = layout(root) or {"all": root}
    found, strays, problems = {}, [], []
    if "all" in splits and ((root / "train").is_dir() or (root / "val").is_dir()):
        return {}, [], [f"{root}: holds {'train/' if (root / 'train').is_dir() else 'val/'} without "
                        f"{'val/' if (root / 'train').is_dir() else 'train/'} (both, or class folders only)"]
    for split, folder in splits.items():
        classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        strays += [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        if not classes:
            problems.append(f"{folder}: holds no class folders (expected <class>/ subfolders of images)")
        found[split] = {}
        for c in classes:
            images, others = _images(c)
            found[split][c.name] = images
            strays += others
            if not CLASS_NAME.match(c.name):
                problems.append(f"{c}: class name {c.name!r} cannot be a name in paths and tables "
                                "(letters, digits, and _ . + - after the first character)")
            if not images:
                problems.append(f"{c}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if "train" in found and set(found["train"]) != set(found["test"]):
        differ = sorted(set(found["train"]) ^ set(found["test"]))
        problems.append(f"{root}: train/ and val/ hold different classes ({', '.join(differ)})")
    return found, strays, problems


def split_files(found: dict, val_fraction: float | None, seed: int) -> dict[str, dict[str, list[Path]]]:
    """{"train": {class: files}, "test": {...}}: as found, or each class split by a seeded draw of
    round(val_fraction * n) test images (at least one image on each side: ``check`` asks for 2 a class).
    Each class's draw is seeded by its name, so adding a class leaves the others' splits alone."""
    import numpy as np

    if "train" in found:
        return {"train": found["train"], "test": found["test"]}
    out = {"train": {}, "test": {}}
    for name, files in sorted(found["all"].items()):
        n_test = min(max(1, round(val_fraction * len(files))), len(files) - 1)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        test = set(rng.choice(len(files), size=n_test, replace=False).tolist())
        out["train"][name] = [f for j, f in enumerate(files) if j not in test]
        out["test"][name] = [f for j, f in enumerate(files) if j in test]
    return out


def _undecodable(files: list[Path], cache: Path) -> list[str]:
    """Each file Pillow cannot decode, named with the error; verdicts remembered by (size, mtime)."""
    from PIL import Image

    seen = json.loads(cache.read_text()) if cache.is_file() else {}
    bad, verdicts = [], {}
    for f in files:
        st = f.stat()
        key = f"{st.st_size}:{st.st_mtime_ns}"
        verdict = seen.get(str(f), {}).get(key)
        if verdict is None:
            try:
                with Image.open(f) as image:
                    image.load()
                verdict = ""
            except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... by the damage
                verdict = f"{type(e).__name__}: {e}"
        verdicts[str(f)] = {key: verdict}
        if verdict:
            bad.append(f"{f}: not a decodable image ({verdict})")
    if verdicts != seen:
        from ..io import write_json

        write_json(cache, verdicts)  # atomic, a temporary file of its own: parses may run at once
    return bad


def check(name: str, decl: dict, ipc: int | None, split_seed: int, checked=CHECKED) -> tuple[list[str], list[str]]:
    """(problems, notes) of one declared folder dataset, before any job: the root, its classes and their
    names, classes with no images or (training split) fewer than the largest IPC, undecodable images;
    notes name the files that are not images (skipped)."""
    found, strays, problems = scan(decl["root"])
    if not found:
        return problems, []
    if "all" in found and decl.get("val_fraction") is None:
        problems.append(f"{decl['root']}: no train/ and val/ folders: set datasets.{name}.val_fraction to split "
                        "each class into training and test images")
        return problems, []
    if "all" in found:
        problems += [f"{files[0].parent}: holds {len(files)} image, a val_fraction split needs 2 or more"
                     for files in found["all"].values() if len(files) == 1]
    split = split_files(found, decl.get("val_fraction"), split_seed) if not problems else {}
    for c, files in split.get("train", {}).items():
        if ipc is not None and len(files) < ipc:
            problems.append(f"{Path(files[0]).parent if files else decl['root']}: class {c} has {len(files)} training "
                            f"images, fewer than ipc {ipc} (params.yaml ipc)")
    everything = [f for per_split in found.values() for files in per_split.values() for f in files]
    problems += _undecodable(everything, Path(checked.format(name=name)))
    notes = [f"{p}: not an image ({p.suffix or 'no suffix'}), skipped" for p in strays]
    return problems, notes


def digest(root) -> str:
    """What a prepared folder dataset depends on: every image's path, size and modification time (a
    Snakemake param of the prepare job: an added, removed or replaced image re-prepares it)."""
    found, _, _ = scan(root)
    h = hashlib.sha256()
    for per_split in found.values():
        for files in per_split.values():
            for f in files:
                st = f.stat()
                h.update(f"{f.relative_to(root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def register(datasets: dict) -> None:
    """Add params.yaml's folder datasets to the registry (class names from the folders; labels 0..n-1:
    the label space of a generator pretrained on them, and the first n rows of the class table of one
    pretrained on other classes, which fine-tuning learns, as DiffFit's code). A built-in name is never
    replaced (the config check names the clash)."""
    for name, decl in (datasets or {}).items():
        if name in BUILTIN:
            continue
        classes = class_names(decl["root"])
        DATASETS[name] = DatasetSpec(name, "folder", tuple(classes), tuple(range(len(classes))), tuple(classes),
                                     decl["resolution"], decl["channels"], f"folder {decl['root']}")


def load_image(path: Path, size: int, channels: int) -> tuple["np.ndarray", str]:  # noqa: F821
    """One file -> (channels, size, size) uint8 and its conversion ("L->RGB", "" when none)."""
    import numpy as np
    from PIL import Image

    from .imagenet import center_crop

    with Image.open(path) as image:
        image.load()
        mode = MODES[channels]
        conversion = "" if image.mode == mode else f"{image.mode}->{mode}"
        image = image.convert(mode)
    array = np.asarray(center_crop(image, size))
    return (array[None] if channels == 1 else array.transpose(2, 0, 1)), conversion


def prepare_folder(spec: DatasetSpec, out, root, val_fraction: float | None = None, split_seed: int = 0,
                   **_) -> dict:
    """Write the suite's dataset folder (data/datasets.py's format) from a folder of class subfolders."""
    import logging

    import numpy as np
    import torch

    from ..io import atomic_dir, save_tensors, write_json

    log = logging.getLogger(__name__)
    found, strays, problems = scan(root)
    if problems:
        raise ValueError(f"{spec.name}: {root} is not usable:\n  " + "\n  ".join(problems))
    for p in strays:
        log.warning("%s: not an image, skipped", p)
    split = split_files(found, val_fraction, split_seed)
    counts, conversions = {}, Counter()
    with atomic_dir(out) as tmp:
        for s in ("train", "test"):
            files = [f for c in spec.class_ids for f in split[s][c]]
            counts[s] = [len(split[s][c]) for c in spec.class_ids]
            images = np.empty((len(files), spec.channels, spec.resolution, spec.resolution), dtype=np.uint8)
            for i, f in enumerate(files):
                images[i], conversion = load_image(f, spec.resolution, spec.channels)
                conversions[conversion] += bool(conversion)
            labels = np.repeat(np.arange(len(spec.class_ids)), counts[s])
            save_tensors(tmp / f"{s}.safetensors", {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels)},
                         {"dataset": spec.name, "split": s, "source_files": [str(f) for f in files]})
        for kind, n in sorted(conversions.items()):
            if n:
                log.info("%s: %d images converted %s", spec.name, n, kind)
        meta = {"name": spec.name, "source": "folder", "root": str(Path(root).resolve()), "class_ids": list(spec.class_ids),
                "labels": list(spec.labels), "class_names": list(spec.class_names), "resolution": spec.resolution,
                "channels": spec.channels, "val_fraction": val_fraction, "split_seed": split_seed,
                "train_counts": counts["train"], "test_counts": counts["test"],
                "conversions": {k: n for k, n in conversions.items() if k}, "skipped": [str(p) for p in strays],
                "notes": spec.notes}
        write_json(tmp / "meta.json", meta)
    return meta
