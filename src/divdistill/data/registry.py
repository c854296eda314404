"""The dataset registry: what each dataset name means (source, classes, labels, size), torch-free, so
the Snakefile's checks read it without importing torch (~2 s of every Snakemake start). The images
and their format are in datasets.py and imagenet.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

IMAGENET_RESOLUTION = 256  # DiT-XL/2-256's image side


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


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def check_fashion_root(root) -> list[str]:
    """Missing Fashion-MNIST files, each with the command that installs them."""
    root = Path(root)
    missing = [root / f for pair in FASHION_FILES.values() for f in pair if not (root / f).is_file()]
    return [f"{p} (install with: {FASHION_INSTALL})" for p in missing]
