"""K-Center / Herding against hand-computed orders and brute force; DM and the feature extractor
on tiny runs."""

import math

import pytest
import torch

from divdistill.baselines.dm import DMConfig, DSAConfig, apply_siamese, distill_dm
from divdistill.baselines.features import embed, load_feature_net, save_feature_net, train_feature_net
from divdistill.baselines.select import herding_order, kcenter_order, needs_features, select
from divdistill.data.datasets import ImageSet
from divdistill.experiment import methods

pytestmark = pytest.mark.usefixtures("one_thread")


def _points_set(per_class=12, classes=3, dim=2, seed=0):
    """Classes interleaved (labels not sorted) so the tests see global indices, not class offsets."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat(per_class)
    feats = torch.randn(len(labels), dim, generator=g) + 3 * labels[:, None]
    images = torch.arange(len(labels)).view(-1, 1, 1, 1).to(torch.uint8)
    return ImageSet(images, labels, [str(c) for c in range(classes)]), feats


def _as_lists(feats):
    return [tuple(map(float, row)) for row in feats]


def brute_kcenter(points, k, start):
    """Farthest-first by definition, in plain Python."""
    chosen = [start]
    while len(chosen) < k:
        best, best_d = None, -1.0
        for i, p in enumerate(points):
            if i in chosen:
                continue
            d = min(math.dist(p, points[j]) for j in chosen)
            if d > best_d:  # strict: the lowest index wins a tie
                best, best_d = i, d
        chosen.append(best)
    return chosen


def brute_herding(points, k):
    """Running-mean matching by definition, in plain Python."""
    dim = len(points[0])
    mu = [sum(p[d] for p in points) / len(points) for d in range(dim)]
    chosen = []
    for j in range(1, k + 1):
        best, best_d = None, math.inf
        for i, p in enumerate(points):
            if i in chosen:
                continue
            mean = [(sum(points[c][d] for c in chosen) + p[d]) / j for d in range(dim)]
            dist = math.dist(mean, mu)
            if dist < best_d:
                best, best_d = i, dist
        chosen.append(best)
    return chosen


# ---------------------------------------------------------------- K-Center

def test_kcenter_hand_computed():
    pts = torch.tensor([[0., 0.], [1., 0.], [5., 0.], [0., 3.], [5., 4.]])
    # from p0: p4 is farthest (sqrt 41); then min-distances p1 1, p2 4, p3 3 -> p2;
    # then p1 1, p3 3 -> p3; p1 last
    assert kcenter_order(pts, 5, start=0).tolist() == [0, 4, 2, 3, 1]
    # p1 and p2 are both at distance 1 from p0: the lower index goes first
    assert kcenter_order(torch.tensor([[0., 0.], [1., 0.], [-1., 0.]]), 3, start=0).tolist() == [0, 1, 2]
    # duplicates: every remaining distance is 0, nothing is picked twice
    assert kcenter_order(torch.zeros(4, 2), 4, start=2).tolist() == [2, 0, 1, 3]


def test_kcenter_matches_brute_force():
    train, feats = _points_set()
    for seed in range(3):
        _, y, idx = select("kcenter", train, 8, seed, features=feats)
        assert y.tolist() == [c for c in range(3) for _ in range(8)]  # class-major
        for c in range(3):
            pool = torch.nonzero(train.labels == c).flatten().tolist()
            picks = idx[8 * c:8 * (c + 1)].tolist()
            local = [pool.index(i) for i in picks]
            assert local == brute_kcenter(_as_lists(feats[pool]), 8, start=local[0])


def test_kcenter_start_is_seeded():
    train, feats = _points_set()
    starts = {tuple(select("kcenter", train, 1, seed, features=feats)[2].tolist()) for seed in range(10)}
    assert len(starts) > 1  # the seed moves the start
    a = select("kcenter", train, 5, 3, features=feats)[2]
    assert torch.equal(a, select("kcenter", train, 5, 3, features=feats)[2])


# ---------------------------------------------------------------- Herding

def test_herding_hand_computed():
    pts = torch.tensor([[0.], [10.], [4.], [6.], [2.]])  # mean 4.4
    # step 1: x nearest 4.4 -> 4 (#2); step 2: (4 + x)/2 ~ 4.4, x ~ 4.8 -> 6 (#3);
    # step 3: x ~ 3.2 -> 2 (#4); step 4: x ~ 5.6 -> 10 (#1) beats 0; then 0 (#0)
    assert herding_order(pts, 5).tolist() == [2, 3, 4, 1, 0]
    # -1 and 1 are equally close to the mean 0: the lower index first
    assert herding_order(torch.tensor([[-1., 0.], [1., 0.]]), 2).tolist() == [0, 1]


def test_herding_matches_brute_force_and_ignores_seed():
    train, feats = _points_set(dim=3)
    _, y, idx = select("herding", train, 8, 0, features=feats)
    assert y.tolist() == [c for c in range(3) for _ in range(8)]
    for c in range(3):
        pool = torch.nonzero(train.labels == c).flatten().tolist()
        local = [pool.index(i) for i in idx[8 * c:8 * (c + 1)].tolist()]
        assert local == brute_herding(_as_lists(feats[pool]), 8)
    assert torch.equal(idx, select("herding", train, 8, 7, features=feats)[2])  # deterministic


# ---------------------------------------------------------------- both

@pytest.mark.parametrize("method", ["kcenter", "herding"])
def test_nested_prefixes_and_errors(method):
    train, feats = _points_set(per_class=10)
    prev = None
    for k in range(1, 11):
        idx = select(method, train, k, 1, features=feats)[2].view(3, k)  # class-major rows
        if prev is not None:
            assert torch.equal(idx[:, :-1], prev)  # selection of k-1 is a prefix of selection of k
        prev = idx
    assert all(len(set(row.tolist())) == 10 for row in prev)  # the whole class, each once
    with pytest.raises(ValueError, match="IPC 11"):
        select(method, train, 11, 0, features=feats)
    with pytest.raises(ValueError, match="needs features"):
        select(method, train, 3, 0)
    # the selector's own signature and the name table (which tells the DAG to train the features) agree
    assert needs_features(method) and methods.get(method).features
    assert not needs_features("random") and not methods.get("random").features
    with pytest.raises(ValueError, match="features must be"):
        select(method, train, 3, 0, features=feats[:-1])


# ---------------------------------------------------------------- DM

def _image_set(per_class=16, classes=2, channels=3, side=8, seed=0):
    """Classes differ in brightness and in which half of the image is lit."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    x = torch.rand(len(labels), channels, side, side, generator=g) * 80 + 40
    x[labels == 0, :, :, : side // 2] += 120
    x[labels == 1, :, : side // 2] += 60
    return ImageSet(x.round().clamp(0, 255).to(torch.uint8), labels, [str(c) for c in range(classes)])


def _dm_cfg(**kw):
    return DMConfig(**{"ipc": 2, "iterations": 30, "lr_img": 1.0, "batch_real": 16, "width": 16, "depth": 2,
                       **kw})


def test_dsa_geometry_conventions():
    x = torch.rand(2, 3, 6, 6)
    flip = {"families": {"flip"}, "theta": torch.tensor([[-1., 0, 0], [0, 1, 0]])}
    assert torch.allclose(apply_siamese(x, flip, DSAConfig()), x.flip(3), atol=1e-6)
    # translate by one pixel (2/6 of the [-1, 1] span / 2): column j shows column j+1, zero padding
    shift = {"families": {"crop"}, "theta": torch.tensor([[1., 0, 2 / 6], [0, 1, 0]])}
    out = apply_siamese(x, shift, DSAConfig())
    assert torch.allclose(out[..., :-1], x[..., 1:], atol=1e-6) and out[..., -1].abs().max() < 1e-6
    # cutout zeroes a 3x3 square; colour with neutral factors is the identity
    cut = apply_siamese(x, {"families": {"cutout"}, "cutout": (0.5, 0.5)}, DSAConfig())
    assert (cut == 0).sum() == 2 * 3 * 9
    neutral = {"families": {"color"}, "brightness": 0.0, "saturation": 1.0, "contrast": 1.0}
    assert torch.allclose(apply_siamese(x, neutral, DSAConfig()), x, atol=1e-6)
    xg = x.clone().requires_grad_(True)
    apply_siamese(xg, {**flip, "families": {"rotate"}}, DSAConfig()).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0  # differentiable w.r.t. the images


def test_dm_loss_decreases_and_output_format():
    train = _image_set()
    steps = []
    res = distill_dm(train, _dm_cfg(), seed=0, on_step=lambda it, loss: steps.append((it, loss)))
    assert res.images.dtype == torch.uint8 and res.images.shape == (4, 3, 8, 8)
    assert res.labels.tolist() == [0, 0, 1, 1]
    assert len(res.losses) == 30 and [s[0] for s in steps] == list(range(1, 31))
    assert sum(res.losses[-5:]) / 5 < sum(res.losses[:5]) / 5
    assert torch.equal(train.labels[res.init_index], res.labels)
    assert not torch.equal(res.images, train.images[res.init_index])  # the pixels moved


def test_dm_zero_iterations_returns_the_initial_real_images():
    train = _image_set()
    init = torch.tensor([3, 5, 20, 17])
    res = distill_dm(train, _dm_cfg(iterations=0), seed=0, init_index=init)
    assert torch.equal(res.images, train.images[init])  # normalise -> de-normalise round trip is exact
    with pytest.raises(ValueError, match="per class"):
        distill_dm(train, _dm_cfg(iterations=0), seed=0, init_index=torch.tensor([3, 20, 5, 17]))


def test_dm_same_seed_bit_identical():
    train = _image_set(channels=1)
    a = distill_dm(train, _dm_cfg(iterations=8), seed=3)
    b = distill_dm(train, _dm_cfg(iterations=8), seed=3)
    assert torch.equal(a.images, b.images) and a.losses == b.losses
    c = distill_dm(train, _dm_cfg(iterations=8), seed=4)
    assert not torch.equal(a.images, c.images)


# ---------------------------------------------------------------- features

def test_feature_net_embed_deterministic_and_reloadable(tmp_path):
    train = _image_set(per_class=8, channels=1)
    kw = dict(width=8, depth=2, epochs=1, batch_size=8, lr=0.01, seed=0)
    net = train_feature_net(train, **kw)
    f = embed(net, train.images, resolution=8)
    assert f.shape == (16, 8 * 2 * 2) and f.dtype == torch.float32
    assert torch.equal(f, embed(train_feature_net(train, **kw), train.images, resolution=8))  # same seed
    # uneven batches give the same rows (up to float rounding: kernels may depend on the batch size)
    assert torch.allclose(f, embed(net, train.images, resolution=8, batch_size=5), atol=1e-5)
    save_feature_net(net, tmp_path / "fx")
    loaded, aug = load_feature_net(tmp_path / "fx")
    assert sorted(p.name for p in (tmp_path / "fx").iterdir()) == ["config.json", "model.safetensors"]
    assert torch.equal(f, embed(loaded, train.images, resolution=loaded.config["resolution"], augment=aug))
