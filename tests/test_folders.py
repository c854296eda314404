"""Your own data (data/folders.py): a folder of class subfolders through the whole suite, and every bad
folder named before any job."""

import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from divdistill.data import folders

from .conftest import FASHION, copy_project, needs_fashion, planned_jobs, run, use_config

CLASSES = {"bag": 8, "sneaker": 7, "trouser": 1}  # folder name -> Fashion-MNIST label


def fashion_test_images() -> tuple[np.ndarray, np.ndarray]:
    from divdistill.data.datasets import read_fashion

    return read_fashion(FASHION, "test")


def write_folder(root, per_class: int = 12, split: bool = False, stray: bool = True):
    """PNGs of Fashion-MNIST test images, every third one saved as RGB (the rest greyscale), and a stray
    notes.txt beside them; ``split``: train/ and val/ folders (val: a third as many)."""
    images, labels = fashion_test_images()
    parts = {"train": per_class, "val": per_class // 3} if split else {"": per_class}
    for name, label in CLASSES.items():
        idx = np.flatnonzero(labels == label)
        start = 0
        for part, n in parts.items():
            folder = root / part / name if part else root / name
            folder.mkdir(parents=True)
            for k, i in enumerate(idx[start:start + n]):
                image = Image.fromarray(images[i].reshape(images.shape[-2:]))  # (1, H, W) -> (H, W)
                (image.convert("RGB") if k % 3 == 0 else image).save(folder / f"{k:03d}.png")
            start += n
    if stray:
        (root / ("train" if split else "") / "bag" / "notes.txt").write_text("not an image")
    return root


def test_class_order_split_and_conversions(tmp_path):
    root = write_folder(tmp_path / "data")
    folders.register({"mine": {"root": str(root), "resolution": 32, "channels": 1, "val_fraction": 0.25}})
    from divdistill.data.registry import DATASETS

    spec = DATASETS["mine"]
    assert spec.class_names == ("bag", "sneaker", "trouser") and spec.labels == (0, 1, 2)  # sorted folder names
    meta = folders.prepare_folder(spec, tmp_path / "out", root, val_fraction=0.25, split_seed=0)
    assert meta["train_counts"] == [9, 9, 9] and meta["test_counts"] == [3, 3, 3]  # round(0.25 * 12) each
    assert meta["conversions"] == {"RGB->L": 12}  # every third of 36 images was saved as RGB
    assert meta["skipped"] == [str(root / "bag" / "notes.txt")]
    again = folders.split_files(folders.scan(root)[0], 0.25, 0)
    assert again == folders.split_files(folders.scan(root)[0], 0.25, 0)  # the seeded split is a function of the seed
    from divdistill.data.datasets import load_split

    train = load_split(tmp_path / "out", "train")
    assert train.images.shape == (27, 1, 32, 32) and train.labels.tolist() == [0] * 9 + [1] * 9 + [2] * 9
    # greyscale back from the RGB copies unchanged: every pixel of the prepared set is the source's
    images, labels = fashion_test_images()
    for j, f in enumerate(again["train"]["bag"]):  # 000.png, 003.png, ... were saved as RGB
        source = images[np.flatnonzero(labels == CLASSES["bag"])[int(f.stem)]].reshape(32, 32)
        assert np.array_equal(train.images[j, 0].numpy(), source), f


def _empty_class(root):
    (root / "empty").mkdir()
    return root / "empty"


def _too_few(root):  # 3 images: 2 for training after the 0.25 split, fewer than IPC 5
    for p in sorted((root / "bag").iterdir())[3:]:
        p.unlink()
    return root / "bag"


def _undecodable(root):
    (root / "trouser" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root / "trouser" / "000.png"


def _class_name(root):
    return (root / "sneaker").rename(root / "sneaker shoes")


BAD = {"missing root": lambda root: root / "nowhere", "empty class": _empty_class, "fewer than ipc": _too_few,
       "undecodable image": _undecodable, "class name": _class_name}


@needs_fashion
@pytest.mark.workflow
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_folder_is_named_in_a_dry_run_before_any_job(project, tmp_path, case):
    root = write_folder(tmp_path / "data", stray=False)
    where = BAD[case](root)
    if case == "missing root":
        root = where
    cfg = yaml.safe_load((project / "params.yaml").read_text())
    cfg["datasets"] = {"mine": {"root": str(root), "resolution": 32, "channels": 1, "val_fraction": 0.25}}
    cfg["tables"] = {"table1": {"datasets": ["mine"], "methods": ["random", "full"], "models": ["convnet"]}}
    cfg["ipc"] = [5]
    cfg.pop("sweeps", None)
    (project / "params.yaml").write_text(yaml.safe_dump(cfg))
    p = run(["snakemake", "-n", "all"], project, check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and f"datasets.mine: {where}" in out, out[-2000:]
    assert "Job stats" not in out and not (project / "results" / "data" / "mine").exists()


@needs_fashion
@pytest.mark.workflow
def test_a_stray_file_is_named_and_skipped_in_a_dry_run(project, tmp_path):
    root = write_folder(tmp_path / "data", split=True)
    cfg = yaml.safe_load((project / "params.yaml").read_text())
    cfg["datasets"] = {"mine": {"root": str(root), "resolution": 32, "channels": 1}}
    cfg["tables"] = {"table1": {"datasets": ["mine"], "methods": ["random", "full"], "models": ["convnet"]}}
    cfg.pop("sweeps", None)
    (project / "params.yaml").write_text(yaml.safe_dump(cfg))
    p = run(["snakemake", "-n", "all"], project)
    assert f"datasets.mine: {root / 'train' / 'bag' / 'notes.txt'}: not an image (.txt), skipped" in p.stderr
    assert "results/data/mine/meta.json" in p.stdout and planned_jobs(p.stdout)["evaluate"] == 1


@needs_fashion
@pytest.mark.slow
@pytest.mark.workflow
def test_the_smoke_dag_on_a_folder_dataset(tmp_path_factory):
    """PNGs (RGB and greyscale mixed, a stray file) through the smoke DAG to Table 1: the demo's DiT
    pretrained on the folder, every kind of method, the folder's class names in MLflow."""
    from mlflow import MlflowClient

    project = copy_project(tmp_path_factory.mktemp("folder"))
    root = write_folder(tmp_path_factory.mktemp("mine") / "data", per_class=16, split=True)
    cfg = use_config(project, "smoke")
    cfg["datasets"] = {"mine": {"root": str(root), "resolution": 32, "channels": 1}}
    cfg["pretrain"]["dataset"] = "mine"
    cfg["tables"] = {"table1": {"datasets": ["mine"], "methods": ["random", "herding", "dm", "dit", "ours", "full"],
                                "models": ["convnet"], "protocols": ["hard", "soft"]}}
    cfg["sweeps"] = {**cfg["sweeps"], "dataset": "mine"}
    (project / "params.yaml").write_text(yaml.safe_dump(cfg))
    p = run(["snakemake", "--cores", "2", "all"], project)
    table = (project / "reports" / "tables" / "table1.md").read_text()
    assert "| hard | mine | 2 | ConvNet |" in table and "| soft | mine | 5 | ConvNet |" in table
    assert "notes.txt: not an image (.txt), skipped" in p.stderr
    meta = json.loads((project / "results" / "data" / "mine" / "meta.json").read_text())
    assert meta["class_names"] == ["bag", "sneaker", "trouser"] and meta["conversions"] == {"RGB->L": 24}
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name(f"{cfg['mlflow']['experiment_prefix']}-prepare")
    runs = client.search_runs([exp.experiment_id], filter_string="params.dataset = 'mine'")
    assert len(runs) == 1 and runs[0].data.params["class_names"] == "bag,sneaker,trouser"
    assert not (project / "results" / "data" / "fashion-mnist").exists()  # nothing of Fashion-MNIST was needed
    assert os.path.getsize(project / "reports" / "metrics.json") > 0


def test_a_folder_changed_image_changes_its_digest_and_bad_layouts_are_named(tmp_path):
    """The prepare job's params hold a digest of every image (path, size, mtime): an added image re-prepares
    the dataset; a lone train/ or a one-image class is named before any job."""
    root = write_folder(tmp_path / "data", per_class=3, stray=False)
    before = folders.digest(root)
    Image.new("L", (28, 28)).save(root / "bag" / "new.png")
    assert folders.digest(root) != before
    (root / "bag" / "new.png").unlink()
    assert folders.digest(root) == before
    for p in sorted((root / "trouser").iterdir())[1:]:
        p.unlink()
    problems, _ = folders.check("mine", {"root": str(root), "val_fraction": 0.5}, None, 0, checked=str(tmp_path / "c.json"))
    assert problems == [f"{root / 'trouser'}: holds 1 image, a val_fraction split needs 2 or more"]
    (root / "train").mkdir()
    problems, _ = folders.check("mine", {"root": str(root), "val_fraction": 0.5}, None, 0, checked=str(tmp_path / "c.json"))
    assert problems == [f"{root}: holds train/ without val/ (both, or class folders only)"]


def test_a_folder_dataset_may_not_take_a_built_in_name(tmp_path):
    from divdistill.experiment import config as dd
    from divdistill.experiment.grid import ConfigError

    from .conftest import ROOT

    cfg = dd.load(ROOT / "params.yaml")
    cfg["datasets"] = {"fashion-hard": {"root": str(write_folder(tmp_path / "data")), "resolution": 32, "channels": 1}}
    with pytest.raises(ConfigError, match="datasets.fashion-hard: the name of a built-in dataset"):
        dd.check(cfg)
    from divdistill.data.registry import DATASETS

    assert DATASETS["fashion-hard"].source == "fashion-mnist"  # the built-in entry is left alone
