"""The dataset registry: what each dataset name means (source, classes, labels, size), torch-free, so
the Snakefile's checks read it without importing torch (~2 s of every Snakemake start). The images
and their format are in datasets.py and imagenet.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

IMAGENET_RESOLUTION = 256  # DiT-XL/2-256's image side
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}  # read by Pillow (ImageNet ships .JPEG, a few holding PNG or CMYK data)


def read_class_list(name: str) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    """(wnids, ImageNet-1K indices, short names) of ``classes/<name>.txt`` (``wnid<TAB>index<TAB>names``).

    The index is the DiT label: the wnid's position in the sorted list of the 1000 ImageNet wnids.
    The short name is the first of the comma-separated synonyms."""
    text = resources.files(__package__).joinpath("classes", f"{name}.txt").read_text()
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    return (tuple(r[0] for r in rows), tuple(int(r[1]) for r in rows),
            tuple(r[2].split(",")[0].strip() for r in rows))


FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_INSTALL = "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"
FASHION_REINSTALL = "reinstall it with: sudo apt-get install --reinstall -y dataset-fashion-mnist"


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset name means: its source and which of the source's classes it keeps."""

    name: str
    source: str  # key of SOURCES: how raw images are read
    class_ids: tuple  # the classes in the source's own terms (Fashion-MNIST label, ImageNet wnid)
    labels: tuple[int, ...]  # label of each class in the pretrained generator's label space
    class_names: tuple[str, ...]
    resolution: int  # stored side length in pixels
    channels: int
    notes: str = field(default="", compare=False)


def _fashion(name: str, ids: tuple[int, ...], notes: str) -> DatasetSpec:
    # 28x28 grey padded to 32x32 so the VAE's and DiT's downsampling divides evenly.
    return DatasetSpec(name, "fashion-mnist", ids, ids, tuple(FASHION_CLASSES[i] for i in ids), 32, 1, notes)


def _imagenet(name: str, notes: str) -> DatasetSpec:
    # classes/<name>.txt: wnids, and their ImageNet-1K indices as labels (DiT-XL/2's label space)
    wnids, labels, names = read_class_list(name)
    return DatasetSpec(name, "imagenet", wnids, labels, names, IMAGENET_RESOLUTION, 3, notes)


# Registry of named datasets (like DiT's model registry): add an entry, not an if-chain.
DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": _fashion("fashion-mnist", tuple(range(10)), "all 10 classes: the pretraining set"),
    "fashion-hard": _fashion("fashion-hard", (0, 2, 3, 4, 6), "confusable upper-body garments (ImageWoof analogue)"),
    "fashion-easy": _fashion("fashion-easy", (1, 5, 7, 8, 9), "distinct shapes (ImageNette analogue)"),
    "imagewoof": _imagenet("imagewoof", "10 dog breeds (fastai's ImageWoof classes): the paper's Tables 1 and 3"),
    "imagenette": _imagenet("imagenette", "10 easily told-apart classes (fastai's ImageNette): Table 2"),
    "imageidc": _imagenet("imageidc", "IDC's ImageNet-10 classes: Table 2"),
}


BUILTIN = frozenset(DATASETS)  # params.yaml's own datasets (data/folders.py) may not take these names


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


FASHION_SHAPES = {  # IDX dimensions of each file: images (N, 28, 28), labels (N,)
    "train-images-idx3-ubyte.gz": (60000, 28, 28), "train-labels-idx1-ubyte.gz": (60000,),
    "t10k-images-idx3-ubyte.gz": (10000, 28, 28), "t10k-labels-idx1-ubyte.gz": (10000,),
}


def idx_dims(raw: bytes) -> tuple[int, ...]:
    """The dimensions of an IDX file's content (magic 0x00 0x00 0x08 <rank>, big-endian uint32 dims, then
    uint8 data); ValueError naming what is wrong when the header or the length does not fit."""
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"bad IDX header (magic {raw[:4].hex() or 'missing'}, not 000008<rank>)")
    rank = raw[3]
    if len(raw) < 4 + 4 * rank:
        raise ValueError(f"truncated IDX header ({len(raw)} bytes for rank {rank})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    expected = 4 + 4 * rank + math.prod(dims)
    if len(raw) != expected:
        raise ValueError(f"IDX data of {len(raw)} bytes where the header {dims} says {expected}")
    return dims


def fashion_damage(path: Path) -> str | None:
    """Why one Fashion-MNIST file is unusable (read through once: gzip stream, CRC, IDX header, shape)."""
    from ..io import DamagedFile, read_gzip

    todo = FASHION_REINSTALL
    try:
        dims = idx_dims(read_gzip(path, todo=todo))
    except DamagedFile as e:
        return str(e)
    except ValueError as e:
        return f"{path}: {e}; {todo}"
    if dims != FASHION_SHAPES[path.name]:
        return f"{path}: holds shape {dims}, Fashion-MNIST's is {FASHION_SHAPES[path.name]}; {todo}"
    return None


def check_fashion_root(root, read: bool = False) -> list[str]:
    """Missing Fashion-MNIST files, each with the command that installs them; with ``read``, also every
    damaged one (each file read through once, ~0.3 s for the four)."""
    root = Path(root)
    files = [root / f for pair in FASHION_FILES.values() for f in pair]
    problems = [f"{p} (install with: {FASHION_INSTALL})" for p in files if not p.is_file()]
    if read and not problems:
        problems = [damage for p in files if (damage := fashion_damage(p))]
    return problems
