"""ImageNet subsets (ImageWoof, ImageNette, ImageIDC) from a user's ImageNet folders.

Reads ``<root>/train/<wnid>/*`` and ``<root>/val/<wnid>/*`` (``layout="imagenet"``: ILSVRC2012 with the
validation images sorted into class folders; ``layout="fastai"``: fastai's imagewoof2 / imagenette2 release,
whose ``val/`` is not ImageNet's validation set), resizes and centre-crops every image to 256x256 as DiT's
training data loader does, and writes the suite's dataset folder (see ``data.py``).

    divdistill prepare --dataset imagewoof --params '{"root": "/data/imagenet", ...}' --out results/data/imagewoof
"""

from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..io import atomic_dir, read_json, save_tensors, write_json
from .registry import IMAGE_SUFFIXES, IMAGENET_RESOLUTION

if TYPE_CHECKING:
    from .registry import DatasetSpec

log = logging.getLogger(__name__)

RESOLUTION = IMAGENET_RESOLUTION
SPLITS = ("train", "test")
FASTAI_RELEASES = {"imagewoof": "imagewoof2", "imagenette": "imagenette2"}  # no fastai release of ImageIDC
IMAGENET_HOWTO = ("ImageNet train/val folders from https://image-net.org (ILSVRC2012), "
                  "val images sorted into <wnid>/ folders")


@dataclass(frozen=True)
class Layout:
    """Where a layout keeps each split and what its test split is."""

    folders: dict  # suite split -> folder under root
    test_split: str  # recorded in meta.json
    notes: str  # appended to the dataset's notes


LAYOUTS = {
    "imagenet": Layout({"train": "train", "test": "val"}, "ImageNet val",
                       "test split: ImageNet's validation images (the paper's protocol)"),
    "fastai": Layout({"train": "train", "test": "val"}, "fastai val (not ImageNet's validation set)",
                     "test split: fastai's val folder, NOT ImageNet's validation set: accuracies are not "
                     "comparable with the paper's"),
}


def howto(name: str, layout: str) -> str:
    """How to obtain the folders a layout expects."""
    if layout == "fastai":
        release = FASTAI_RELEASES[name]
        return (f"download and extract https://s3.amazonaws.com/fast-ai-imageclas/{release}.tgz "
                f"and pass the extracted {release}/ folder as root")
    return IMAGENET_HOWTO


# ----------------------------------------------------------------------------- images

def center_crop(image: Image.Image, size: int = RESOLUTION) -> Image.Image:
    """Shorter side to ``size`` then the central ``size`` x ``size`` square, as DiT's ``center_crop_arr``:
    box-filter halvings while the image is at least twice the target (cheap, alias-free), then one bicubic
    resize, then a crop whose offset rounds down."""
    while min(image.size) >= 2 * size:
        image = image.resize((image.width // 2, image.height // 2), resample=Image.Resampling.BOX)
    scale = size / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)),
                         resample=Image.Resampling.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image(path, size: int = RESOLUTION) -> tuple[np.ndarray, bool]:
    """One file -> (3, size, size) uint8 and whether it had to be enlarged. Raises on unreadable files
    (PIL refuses truncated files unless ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set; we leave it unset)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")  # decodes the whole file; grey, CMYK and palette images become RGB
    upscaled = min(rgb.size) < size
    return np.asarray(center_crop(rgb, size)).transpose(2, 0, 1), upscaled  # (H, W, 3) -> (3, H, W)


def list_images(folder: Path) -> list[Path]:
    """Image files of a class folder, sorted by name (the order every draw is made in)."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())


# ----------------------------------------------------------------------------- validation

def check_imagenet_root(spec: DatasetSpec, root, layout: str = "imagenet", per_class: dict | None = None,
                        ipc: int | None = None) -> list[str]:
    """Everything wrong with ``root`` for ``spec`` before any decoding: missing root, split or class folders,
    empty class folders, (with ``per_class`` = {split: n or None}) classes holding fewer images than
    requested, and (with ``ipc``) training classes holding fewer images than the largest IPC. Each
    problem names its path; a non-empty list ends with how to obtain the data."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if layout == "fastai" and spec.name not in FASTAI_RELEASES:
        return [f"fastai publishes no {spec.name} release; use layout 'imagenet' ({IMAGENET_HOWTO})"]
    root = Path(root)
    problems = []
    if not root.is_dir():
        problems.append(f"{root}: root folder does not exist")
    else:
        for split, folder in LAYOUTS[layout].folders.items():
            split_dir = root / folder
            if not split_dir.is_dir():
                problems.append(f"{split_dir}: {split} split folder does not exist")
                continue
            for wnid in spec.class_ids:
                class_dir = split_dir / wnid
                if not class_dir.is_dir():
                    problems.append(f"{class_dir}: class folder does not exist")
                    continue
                n = len(list_images(class_dir))
                want = (per_class or {}).get(split)
                if n == 0:
                    problems.append(f"{class_dir}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
                elif want is not None and n < want:
                    problems.append(f"{class_dir}: holds {n} images, {split}_per_class={want} requested")
                elif split == "train" and ipc is not None and n < ipc:
                    problems.append(f"{class_dir}: holds {n} images, fewer than ipc {ipc} (params.yaml ipc)")
    if problems:
        problems.append(f"how to obtain them: {howto(spec.name, layout)}")
    return problems


# ----------------------------------------------------------------------------- preparing

def _draw(files: list[Path], per_class: int | None, seed: list[int]) -> list[Path]:
    if per_class is None:
        return files
    # one generator per (seed, split, class): a class's draw does not depend on the subset it is in
    idx = np.sort(np.random.default_rng(seed).choice(len(files), size=per_class, replace=False))
    return [files[i] for i in idx]


def _decode_all(files: list[Path], desc: str, workers: int) -> tuple[np.ndarray, list[str], int]:
    """Decode every file into one preallocated (N, 3, 256, 256) array; return it, one line per file that
    failed (all of them, not just the first) and the number of images that had to be enlarged."""
    images = np.empty((len(files), 3, RESOLUTION, RESOLUTION), dtype=np.uint8)
    errors, upscaled = [], 0

    def work(i: int) -> bool:
        images[i], up = load_image(files[i])  # rows are disjoint, so threads may write them concurrently
        return up

    # threads suffice: PIL releases the GIL while it decodes and resizes
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(work, i): i for i in range(len(files))}
        for future in tqdm(as_completed(futures), total=len(files), desc=desc, file=sys.stderr, leave=False):
            try:
                upscaled += future.result()
            except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... depending on the damage
                errors.append(f"{files[futures[future]]}: {type(e).__name__}: {e}")
    return images, sorted(errors), upscaled


def _request(spec: DatasetSpec, root, layout, train_per_class, test_per_class, split_seed) -> dict:
    """What a prepared folder was made from: equal requests give equal folders."""
    return {"name": spec.name, "root": str(Path(root).resolve()), "layout": layout,
            "train_per_class": train_per_class, "test_per_class": test_per_class, "split_seed": split_seed,
            "resolution": spec.resolution}


def prepare_imagenet(spec: DatasetSpec, out, root, layout: str = "imagenet", train_per_class: int | None = None,
                     test_per_class: int | None = None, split_seed: int = 0, workers: int | None = None) -> dict:
    """Write an ImageNet-subset dataset folder from ``root`` (see the module docstring for the layouts).

    ``*_per_class=None`` keeps every image; otherwise a seeded draw per (split_seed, split, class) from the
    class's files sorted by name. The folder is the cache: if ``out`` already holds a folder made from the
    same request it is returned untouched. Nothing is written unless every image decodes."""
    out = Path(out)
    request = _request(spec, root, layout, train_per_class, test_per_class, split_seed)
    if (out / "meta.json").exists() and all((out / f"{s}.safetensors").exists() for s in SPLITS):
        meta = read_json(out / "meta.json")
        if all(meta.get(k) == v for k, v in request.items()):
            log.info("%s is already prepared from the same request; keeping it", out)
            return meta

    per_class = {"train": train_per_class, "test": test_per_class}
    problems = check_imagenet_root(spec, root, layout, per_class)
    if problems:
        raise FileNotFoundError(f"{spec.name}: the {layout} layout under {root} is not usable:\n  "
                                + "\n  ".join(problems))
    lay = LAYOUTS[layout]
    if layout == "fastai":
        log.warning("%s: %s", spec.name, lay.notes)
    workers = workers or min(8, os.cpu_count() or 1)
    root = Path(root)

    errors, counts, upscaled = [], {}, {}
    with atomic_dir(out) as tmp:  # out appears complete or not at all
        for s, split in enumerate(SPLITS):
            files, counts[split] = [], []
            for wnid, label in zip(spec.class_ids, spec.labels):
                drawn = _draw(list_images(root / lay.folders[split] / wnid), per_class[split],
                              [split_seed, s, label])
                files += drawn
                counts[split].append(len(drawn))
            images, bad, upscaled[split] = _decode_all(files, f"{spec.name} {split}", workers)
            errors += bad
            if upscaled[split]:  # e.g. fastai's 160 px release: enlarged images are blurrier than ImageNet's
                log.warning("%s %s: %d images smaller than %d px were enlarged", spec.name, split,
                            upscaled[split], RESOLUTION)
            if errors:  # keep decoding the other split to report every bad file, but write nothing
                continue
            labels = np.repeat(np.arange(len(spec.class_ids)), counts[split])  # class-major, local labels
            save_tensors(tmp / f"{split}.safetensors",
                         {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels)},
                         {"dataset": spec.name, "split": split,
                          "source_files": [str(f.relative_to(root)) for f in files]})
            del images
        if errors:
            raise ValueError(f"{spec.name}: {len(errors)} image file(s) could not be decoded "
                             "(re-download or remove them):\n  " + "\n  ".join(errors))
        meta = {
            **request, "source": spec.source, "class_ids": list(spec.class_ids), "labels": list(spec.labels),
            "class_names": list(spec.class_names), "channels": spec.channels, "test_split": lay.test_split,
            "train_counts": counts["train"], "test_counts": counts["test"], "upscaled": upscaled,
            "notes": "; ".join(n for n in (spec.notes, lay.notes) if n),
        }
        write_json(tmp / "meta.json", meta)  # written last: its presence marks a complete folder
    return meta
