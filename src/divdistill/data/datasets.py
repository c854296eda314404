"""Datasets: one interface from a name to classes, train images and test images.

A prepared dataset is a folder ``<root>/<name>/`` holding ``train.safetensors``
and ``test.safetensors`` (``images`` uint8 (N, C, H, W), ``labels`` int64 in
0..C-1, class-major and in a fixed order) and ``meta.json`` (class names, the
label of each class in the generator's label space, resolution, channels, split
sizes). Every downstream job (selection, pretraining, fine-tuning, evaluation)
reads only this format, so new sources (ImageNet subsets) plug in by writing it.

    divdistill prepare --dataset fashion-hard --out results/data/fashion-hard ...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import DamagedFile, load_tensors, read_gzip, read_json, save_tensors, write_json
from .folders import prepare_folder
from .imagenet import prepare_imagenet
from .registry import FASHION_FILES, FASHION_REINSTALL, DatasetSpec, check_fashion_root, get_spec, idx_dims

# ---------------------------------------------------------------- sources

def _read_idx(path: Path) -> np.ndarray:
    """IDX format (big-endian dims after a magic number whose last byte is the rank); a damaged file is
    named (DamagedFile) with what is wrong with it."""
    raw = read_gzip(path, todo=FASHION_REINSTALL)
    try:
        dims = idx_dims(raw)
    except ValueError as e:
        raise DamagedFile(path, str(e), FASHION_REINSTALL) from None
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def read_fashion(root, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images (N, 1, 32, 32) uint8 and labels (N,) of one Fashion-MNIST split."""
    problems = check_fashion_root(root)
    if problems:
        raise FileNotFoundError("Fashion-MNIST is missing:\n  " + "\n  ".join(problems))
    img_file, lbl_file = FASHION_FILES[split]
    images = _read_idx(Path(root) / img_file)  # (N, 28, 28)
    labels = _read_idx(Path(root) / lbl_file).astype(np.int64)
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[:, None]  # (N, 1, 32, 32)
    return images, labels


def prepare_fashion(spec: DatasetSpec, root, out, train_per_class: int, test_per_class: int, split_seed: int) -> dict:
    """Write a Fashion-MNIST dataset folder. The per-class draws depend only on
    ``split_seed`` and the class, so fashion-hard's images are the same ones
    fashion-mnist holds for those classes."""
    out = Path(out)
    sizes = {"train": train_per_class, "test": test_per_class}
    for split, per_class in sizes.items():
        images, labels = read_fashion(root, split)
        parts = []
        for cid in spec.class_ids:
            pool = np.flatnonzero(labels == cid)
            if per_class > len(pool):
                raise ValueError(f"{split}: class {cid} holds {len(pool)} images, {per_class} requested")
            # one generator per (seed, split, class): a class's draw does not depend on the subset
            rng = np.random.default_rng([split_seed, ["train", "test"].index(split), cid])
            parts.append(np.sort(rng.choice(pool, size=per_class, replace=False)))
        idx = np.concatenate(parts)
        local = np.repeat(np.arange(len(spec.class_ids)), per_class)
        save_tensors(out / f"{split}.safetensors",
                     {"images": torch.from_numpy(images[idx].copy()), "labels": torch.from_numpy(local)},
                     {"dataset": spec.name, "split": split, "source_index": idx.tolist()})
    meta = {
        "name": spec.name, "source": spec.source, "class_ids": list(spec.class_ids),
        "labels": list(spec.labels), "class_names": list(spec.class_names),
        "resolution": spec.resolution, "channels": spec.channels,
        "train_per_class": train_per_class, "test_per_class": test_per_class,
        "split_seed": split_seed, "notes": spec.notes,
    }
    write_json(out / "meta.json", meta)  # written last: its presence marks a complete folder
    return meta


# source -> writer of a dataset folder (called as writer(spec, out=..., **kwargs))
SOURCES = {"fashion-mnist": prepare_fashion, "imagenet": prepare_imagenet, "folder": prepare_folder}


def prepare(name: str, out, **kwargs) -> dict:
    spec = get_spec(name)
    return SOURCES[spec.source](spec, out=out, **kwargs)


# ---------------------------------------------------------------- reading

@dataclass
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64, 0..num_classes-1
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def per_class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


def load_meta(folder) -> dict:
    path = Path(folder) / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: prepare the dataset first (snakemake prepare)")
    return read_json(path)


def load_split(folder, split: str) -> ImageSet:
    meta = load_meta(folder)
    tensors, _ = load_tensors(Path(folder) / f"{split}.safetensors")
    return ImageSet(tensors["images"], tensors["labels"], meta["class_names"])


def take_ipc(images: torch.Tensor, labels: torch.Tensor, ipc: int, source: str = "set") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``ipc`` images of every class, in stored order (nested prefixes:
    the IPC-10 set is contained in the IPC-20 set)."""
    keep = []
    for c in labels.unique(sorted=True).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < ipc:
            raise ValueError(f"{source}: class {c} holds {len(idx)} images, IPC {ipc} requested")
        keep.append(idx[:ipc])
    keep = torch.cat(keep)
    return images[keep], labels[keep]
