"""Evaluation protocol: test networks, batch augmentation, CutMix and the trainer."""

import pytest
import torch
import torch.nn as nn

from divdistill.data.augment import AugmentConfig, augment_batch, cutmix, normalize, test_transform
from divdistill.evaluate.nets import NETS, build_net
from divdistill.evaluate.trainer import TrainConfig, seed_everything, train_and_test

from .conftest import keyed

PLAIN = dict(color_jitter=0.0, lighting=0.0, cutmix_beta=0.0)  # geometry only


def images(n=8, c=3, side=32, seed=0):
    return torch.randint(0, 256, (n, c, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- nets

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(NETS))
def test_net_shapes_32px(name, channels):
    net = build_net(name, num_classes=5, channels=channels, resolution=32, width=8)
    assert net(torch.randn(2, channels, 32, 32)).shape == (2, 5)


def test_convnet6_at_224px():
    net = build_net("convnet", num_classes=10, channels=3, resolution=224, width=16, depth=6)
    assert net.classifier.in_features == 16 * 3 * 3  # 224 -> 112 -> 56 -> 28 -> 14 -> 7 -> 3
    assert net(torch.randn(2, 3, 224, 224)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(NETS))
def test_norm_is_instance_norm(name):
    net = build_net(name, num_classes=5, channels=3, resolution=32, width=8)
    norms = [m for m in net.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d, nn.InstanceNorm2d))]
    assert norms and all(type(m) is nn.GroupNorm and m.num_groups == m.num_channels and m.affine for m in norms)


def _layers(seq):
    """A stem as (type, the arguments that define it) per layer."""
    out = []
    for m in seq:
        if isinstance(m, nn.Conv2d):
            out.append(("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0],
                        m.bias is not None))
        elif isinstance(m, nn.GroupNorm):
            out.append(("instance_norm", m.num_groups, m.num_channels))
        elif isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
            out.append((type(m).__name__, m.kernel_size, m.stride, m.padding))
        else:
            out.append((type(m).__name__,))
    return out


def test_resnet_stems_are_idcs_intro_block():
    """IDC models/resnet_ap.py IntroBlock (L49-77): 'large' (> 128 px) conv7x7 stride 1 pad 3, no bias,
    IN, ReLU, AvgPool2d(4, 4); 'mid' (65..128) conv3x3 s1 + AvgPool2d(2, 2); 'small' (<= 64) conv3x3 s1,
    no pool. IDC models/resnet.py IntroBlock (L25-45): conv7x7 s2 + MaxPool(3, 2, 1) large, conv3x3 s1 +
    the same max pool mid."""
    w = 8
    norm_relu = [("instance_norm", w, w), ("ReLU",)]
    expected = {
        ("resnetap10", 224): [("conv", 3, w, 7, 1, 3, False), *norm_relu, ("AvgPool2d", 4, 4, 0)],
        ("resnetap10", 96): [("conv", 3, w, 3, 1, 1, False), *norm_relu, ("AvgPool2d", 2, 2, 0)],
        ("resnetap10", 32): [("conv", 3, w, 3, 1, 1, False), *norm_relu],
        ("resnet18", 224): [("conv", 3, w, 7, 2, 3, False), *norm_relu, ("MaxPool2d", 3, 2, 1)],
        ("resnet18", 96): [("conv", 3, w, 3, 1, 1, False), *norm_relu, ("MaxPool2d", 3, 2, 1)],
        ("resnet18", 32): [("conv", 3, w, 3, 1, 1, False), *norm_relu],
    }
    for (name, res), layers in expected.items():
        net = build_net(name, num_classes=5, channels=3, resolution=res, width=w)
        assert _layers(net.stem) == layers, (name, res)
    stem = build_net("resnetap10", num_classes=5, channels=3, resolution=224, width=w).stem
    assert stem(torch.zeros(1, 3, 224, 224)).shape == (1, w, 56, 56)  # as IDC: 224 / 4


def test_resnetap_downsamples_by_average_pooling():
    net = build_net("resnetap10", num_classes=5, channels=3, resolution=32, width=8)
    assert all(m.stride == (1, 1) for m in net.modules() if isinstance(m, nn.Conv2d))
    assert any(isinstance(m, nn.AvgPool2d) for m in net.modules())
    r18 = build_net("resnet18", num_classes=5, channels=3, resolution=224, width=8)
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in r18.modules()) == 16


def test_unknown_net():
    with pytest.raises(ValueError, match=r"'vgg'.*convnet.*resnetap10.*resnet18"):
        build_net("vgg", 5, 3, 32, 8)


# ---------------------------------------------------------------- augmentation

@pytest.mark.parametrize("channels", [1, 3])
def test_augment_shape_dtype(channels):
    x = images(c=channels, side=40)
    out = augment_batch(x, 32, AugmentConfig(), gen())
    assert out.shape == (8, channels, 32, 32) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_identity_crop_reproduces_normalised_input():
    x = images()
    out = augment_batch(x, 32, AugmentConfig(crop_scale=(1, 1), flip=False, **PLAIN), gen())
    torch.testing.assert_close(out, normalize(x.float() / 255), atol=1e-5, rtol=0)


def test_flip_only_gives_image_or_mirror():
    x = images(n=32)
    out = augment_batch(x, 32, AugmentConfig(crop_scale=(1, 1), flip=True, **PLAIN), gen())
    ref = normalize(x.float() / 255)
    same = (out - ref).abs().amax((1, 2, 3)) < 1e-5
    mirrored = (out - ref.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_augment_same_seed_same_batch():
    x = images()
    a = augment_batch(x, 24, AugmentConfig(), gen(3))
    assert torch.equal(a, augment_batch(x, 24, AugmentConfig(), gen(3)))
    assert not torch.equal(a, augment_batch(x, 24, AugmentConfig(), gen(4)))


def test_test_transform_is_minimax_resize_then_centre_crop():
    """Minimax data.py L302-304 (size 224): Resize(224) + CenterCrop(224). A stored 256 px image is
    resized whole to 224 (its 16 px white frame survives as a 14 px frame), not cropped to its centre;
    a 256 x 320 image of 32 px stripes becomes 224 x 280 (28 px stripes) and loses 28 px each side."""
    plain = AugmentConfig(mean=(0.0,), std=(1.0,))  # identity normalisation: pixels in [0, 1]
    framed = torch.zeros(1, 1, 256, 256, dtype=torch.uint8)
    framed[..., :16, :], framed[..., -16:, :], framed[..., :, :16], framed[..., :, -16:] = 255, 255, 255, 255
    out = test_transform(framed, 224, plain)[0, 0]
    assert out.shape == (224, 224)
    near = lambda a, v: bool(((a - v).abs() < 1e-6).all())  # noqa: E731 (interpolation weights sum to 1 +- ulp)
    assert near(out[:13], 1) and near(out[:, :13], 1) and near(out[-13:], 1)  # the frame: 16 px * 7/8
    assert near(out[16:208, 16:208], 0)  # the inside, untouched by the frame's blur
    stripes = torch.arange(10, dtype=torch.uint8).repeat_interleave(32).mul(20).expand(1, 1, 256, 320).clone()
    out = test_transform(stripes, 224, plain)[0, 0]
    assert out.shape == (224, 224)
    for k in range(8):  # output stripe k is input stripe k + 1 (28 px cut on the left), interiors exact
        torch.testing.assert_close(out[:, 28 * k + 3:28 * k + 25], torch.full((224, 22), (k + 1) * 20 / 255))
    x = images(n=2, side=32)
    torch.testing.assert_close(test_transform(x, 32), normalize(x.float() / 255))  # the demo: unchanged
    assert test_transform(images(n=2, side=512), 224).shape == (2, 3, 224, 224)
    small = images(n=2, c=1, side=28)
    assert test_transform(small, 32).shape == (2, 1, 32, 32)
    torch.testing.assert_close(test_transform(small, 28), (small.float() / 255 - 0.5) / 0.5)


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_lam_is_pasted_area(seed):
    n, side = 6, 20
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, side, side)  # image i is all i
    y = torch.arange(n) + 10
    mixed, ya, yb, lam = cutmix(x, y, 1.0, gen(seed))
    assert torch.equal(ya, y) and 0 <= lam <= 1
    for i in range(n):
        partner = yb[i].item() - 10
        own = (mixed[i] == i).float().mean().item()
        if partner != i:  # a self-partner pastes onto itself: nothing visible
            assert own == pytest.approx(lam)
            assert ((mixed[i] == i) | (mixed[i] == partner)).all()


# ---------------------------------------------------------------- trainer

def stripes(n_per_class, seed, side=16):
    """3 classes: horizontal stripes, vertical stripes, flat; random phase and noise.
    Orientation survives flips and crops, so the augmented problem stays separable."""
    g = gen(seed)
    idx = torch.arange(side)
    xs, ys = [], []
    for k in range(3):
        phase = torch.randint(0, 4, (n_per_class, 1, 1), generator=g)
        wave = ((idx.view(1, -1, 1) + phase) % 4 < 2).float().expand(-1, side, side)  # horizontal stripes
        pattern = [wave, wave.transpose(1, 2), torch.full_like(wave, 0.5)][k]
        img = 60 + 140 * pattern + 30 * torch.rand(n_per_class, side, side, generator=g)
        xs.append(img.clamp(0, 255).to(torch.uint8).unsqueeze(1))
        ys.append(torch.full((n_per_class,), k))
    return torch.cat(xs), torch.cat(ys)


def tiny_run(seed, epochs=2, **kw):
    x, y = stripes(8, seed=1)
    tx, ty = stripes(8, seed=2)
    seed_everything(seed)
    net = build_net("convnet", 3, 1, 16, width=8, depth=2)
    cfg = TrainConfig(epochs=epochs, resolution=16, batch_size=8, eval_every=1, **kw)
    return train_and_test(net, x, y, tx, ty, cfg, seed=seed, progress=False)


def test_trainer_learns_separable_problem():
    x, y = stripes(20, seed=1)
    tx, ty = stripes(30, seed=2)
    seed_everything(0)
    net = build_net("convnet", 3, 1, 16, width=16, depth=2)
    cfg = TrainConfig(epochs=15, resolution=16, batch_size=16, lr=0.05, eval_every=5)
    res = train_and_test(net, x, y, tx, ty, cfg, seed=0, progress=False)
    assert res["test_acc"] > 0.8  # chance is 1/3
    assert [r["epoch"] for r in res["curve"] if "test_acc" in r] == [5, 10, 15]
    assert res["best_test_acc"] >= res["test_acc"] and res["best_epoch"] in (5, 10, 15)
    assert res["train_loss"] == res["curve"][-1]["train_loss"]


def test_trainer_reproducible():
    a, b, c = tiny_run(0), tiny_run(0), tiny_run(1)
    assert a == b  # bit-identical curves, losses and accuracies
    assert a["curve"][0]["train_loss"] != c["curve"][0]["train_loss"]


def test_lr_schedule_and_callback():
    seen = []
    x, y = stripes(2, seed=1)
    seed_everything(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3))
    cfg = TrainConfig(epochs=12, resolution=16, lr=0.1, gamma=0.2, milestones=[0.5, 0.75], eval_every=0)
    res = train_and_test(net, x, y, x, y, cfg, seed=0, progress=False, on_epoch=lambda e, m: seen.append((e, m)))
    lrs = [r["lr"] for r in res["curve"]]
    assert lrs == pytest.approx([0.1] * 6 + [0.02] * 3 + [0.004] * 3)
    assert [e for e, _ in seen] == list(range(1, 13)) and "test_acc" in seen[-1][1]
    assert [r["epoch"] for r in res["curve"] if "test_acc" in r] == [12]


def test_milestone_epochs_match_idc():
    for epochs in (8, 50, 80, 100, 300, 1000):
        idc = [2 * epochs // 3, 5 * epochs // 6]
        assert TrainConfig(epochs=epochs, resolution=32).milestone_epochs() == idc
        assert TrainConfig(epochs=epochs, resolution=32, milestones=(0.6667, 0.8333)).milestone_epochs() == idc


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path, one_thread):
    """Checkpoint every 2 epochs, stop after epoch 3 (as a kill would), rerun: the resumed run replays
    the saved epochs and ends bit-identical to a run that was never stopped."""
    from divdistill.data.augment import AugmentConfig
    from divdistill.evaluate.nets import build_net
    from divdistill.io import load_checkpoint

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 1, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.arange(4).repeat_interleave(10)
    cfg = TrainConfig(epochs=6, resolution=16, batch_size=8, eval_every=2,
                      augment=AugmentConfig(color_jitter=0.2, lighting=0.0, cutmix_beta=1.0))

    def run(ckpt, stop_after=None):
        seed_everything(5)
        net = build_net("convnet", 4, 1, 16, 8, 2)
        seen = []

        def on_epoch(epoch, m):
            seen.append(epoch)
            if epoch == stop_after:
                raise KeyboardInterrupt  # stands in for the kill
        return train_and_test(net, x, y, x, y, cfg, seed=5, progress=False, on_epoch=on_epoch,
                              checkpoint_dir=ckpt, checkpoint_every=2), net, seen

    ref, ref_net, _ = run(None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "ck", stop_after=3)
    assert load_checkpoint(keyed(tmp_path / "ck"))["step"] == 2  # the last checkpoint before the stop
    res, net, seen = run(tmp_path / "ck")
    assert seen == [1, 2, 3, 4, 5, 6]  # epochs 1-2 replayed from the checkpoint, 3-6 trained
    assert res["curve"] == ref["curve"] and res["test_acc"] == ref["test_acc"]
    assert not (tmp_path / "ck").exists()  # a finished run leaves no checkpoint behind
    for (k, a), b in zip(ref_net.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), k
