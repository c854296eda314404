import numpy as np
import pytest
import torch

from divdistill.data.datasets import load_meta, load_split, prepare, read_fashion, take_ipc
from divdistill.data.registry import DATASETS, FASHION_INSTALL

from .conftest import FASHION, needs_fashion


@needs_fashion
def test_prepare_fashion_subset(tmp_path):
    meta = prepare("fashion-hard", out=tmp_path / "hard", root=FASHION, train_per_class=12, test_per_class=7, split_seed=3)
    train, test = load_split(tmp_path / "hard", "train"), load_split(tmp_path / "hard", "test")
    assert meta == load_meta(tmp_path / "hard")
    assert meta["class_names"] == ["T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"]
    assert train.images.shape == (60, 1, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (35, 1, 32, 32)
    assert train.per_class_counts() == [12] * 5 and test.per_class_counts() == [7] * 5
    # 28x28 padded by 2 on every side: the border is black
    assert train.images[:, :, :2].sum() == 0 and train.images[:, :, :, -2:].sum() == 0

    # each stored image is the raw image of the right source class
    raw_x, raw_y = read_fashion(FASHION, "train")
    from divdistill.io import load_tensors

    _, header = load_tensors(tmp_path / "hard" / "train.safetensors")
    src = np.array(header["source_index"])
    assert np.array_equal(raw_y[src], np.repeat(DATASETS["fashion-hard"].class_ids, 12))
    assert torch.equal(torch.from_numpy(raw_x[src]), train.images)


@needs_fashion
def test_prepare_is_seeded_and_subsets_agree(tmp_path):
    kw = dict(root=FASHION, train_per_class=10, test_per_class=5)
    prepare("fashion-hard", out=tmp_path / "a", split_seed=0, **kw)
    prepare("fashion-hard", out=tmp_path / "b", split_seed=0, **kw)
    prepare("fashion-hard", out=tmp_path / "c", split_seed=1, **kw)
    prepare("fashion-mnist", out=tmp_path / "all", split_seed=0, **kw)
    a, b, c = (load_split(tmp_path / k, "train").images for k in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the pretraining set holds the same draws for the subset's classes (T-shirt is class 0 in both)
    full = load_split(tmp_path / "all", "train")
    assert torch.equal(full.images[full.labels == 0], a[:10])


def test_missing_fashion_names_install_command(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        read_fashion(tmp_path, "train")
    assert FASHION_INSTALL in str(e.value) and "train-images-idx3-ubyte.gz" in str(e.value)


def test_take_ipc_nested_prefixes():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    images = torch.arange(6).view(6, 1, 1, 1)
    x1, y1 = take_ipc(images, labels, 1)
    x2, y2 = take_ipc(images, labels, 2)
    assert x1.flatten().tolist() == [0, 3] and x2.flatten().tolist() == [0, 1, 3, 4]
    assert y2.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="IPC 4"):
        take_ipc(images, labels, 4)
