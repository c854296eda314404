import torch

from divdistill.baselines.select import select
from divdistill.data.datasets import ImageSet


def _train(per_class=20, classes=3):
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.arange(len(labels)).view(-1, 1, 1, 1).to(torch.uint8)
    return ImageSet(images, labels, [str(c) for c in range(classes)])


def test_random_selection_per_class_seeded_and_distinct():
    train = _train()
    x, y, idx = select("random", train, 5, seed=0)
    assert y.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert torch.equal(train.labels[idx], y) and torch.equal(train.images[idx], x)
    assert len(set(idx.tolist())) == 15  # no image twice
    x2, _, idx2 = select("random", train, 5, seed=0)
    assert torch.equal(idx, idx2)
    _, _, idx3 = select("random", train, 5, seed=1)
    assert not torch.equal(idx, idx3)


def test_random_selection_covers_uniformly():
    # every image of a class is equally likely to be picked: over many seeds each is
    # chosen about max_ipc / per_class of the time
    train = _train(per_class=10, classes=1)
    counts = torch.zeros(10)
    for seed in range(2000):
        counts[select("random", train, 3, seed)[2]] += 1
    assert torch.allclose(counts / 2000, torch.full((10,), 0.3), atol=0.04)
