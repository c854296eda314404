"""Sampler on tiny random / mocked models: respacing vs DiT, step vs diffusers, per-image noise, CFG."""

from types import SimpleNamespace

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler
from PIL import Image

from divdistill.generator.sample import (
    dit_timesteps,
    guided_output,
    image_noise,
    make_scheduler,
    sample_images,
    sample_latents,
    save_grid,
    save_pngs,
)

NULL = 10


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest


def run(dit, labels, index, **kw):
    kw = {"steps": 8, "guidance": 4.0, "null_label": NULL, "seed": 0, "progress": False, **kw}
    return sample_latents(dit, torch.tensor(labels), index=torch.tensor(index), **kw)


def test_dit_respacing():
    assert dit_timesteps(50)[:3] == [999, 979, 958] and dit_timesteps(50)[-1] == 0
    s = make_scheduler()
    s.set_timesteps(50)  # linspace spacing gives DiT's list for 50 steps ...
    assert s.timesteps.tolist() == dit_timesteps(50)
    s.set_timesteps(21)  # ... but not for every count (DiT accumulates the stride in floats)
    assert s.timesteps.tolist() != dit_timesteps(21)
    default = DDPMScheduler(num_train_timesteps=1000)
    default.set_timesteps(50)  # diffusers' default "leading" spacing never visits t = 999
    assert default.timesteps[0] == 980


def test_shape_dtype_and_seed(dit):
    a = run(dit, [0, 3, 3], [0, 0, 1])
    assert a.shape == (3, 4, 8, 8) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, run(dit, [0, 3, 3], [0, 0, 1]))
    assert not torch.allclose(a, run(dit, [0, 3, 3], [0, 0, 1], seed=1))
    assert not torch.allclose(a[1], a[2])  # same class, other index: other noise


def test_image_independent_of_batch(dit):
    labels, index = [0, 1, 2, 3, 4, 5], [0, 0, 0, 7, 1, 2]
    whole = run(dit, labels, index, batch_size=6)
    chunked = run(dit, labels, index, batch_size=4)
    reordered = run(dit, labels[::-1] + [9], index[::-1] + [5], batch_size=3)[:6].flip(0)
    # the noise is bit-identical per image (test below), but the DiT's CPU kernels round differently with
    # the batch's row count (~1e-7 per forward, measured), which 8 steps of a random model amplify to ~3e-5
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reordered, whole, rtol=1e-4, atol=1e-4)


def test_noise_is_per_image():
    labels, index = torch.tensor([3, 1, 3, 0]), torch.tensor([0, 0, 1, 0])
    full = image_noise(7, labels, index, 5, (4, 8, 8))  # (4, 5, 4, 8, 8)
    assert torch.equal(image_noise(7, labels[[2, 0]], index[[2, 0]], 5, (4, 8, 8)), full[[2, 0]])
    assert not torch.equal(full[0], full[2]) and not torch.equal(full[0], image_noise(8, labels, index, 5, (4, 8, 8))[0])


def test_guidance_one_is_diffusers_conditional_ancestral_sampling(dit, monkeypatch):
    """guidance 1 == the conditional model stepped by diffusers' own DDPMScheduler.step (same noise)."""
    labels, index, steps, seed = torch.tensor([2, 7]), torch.tensor([0, 3]), 6, 5
    noise = image_noise(seed, labels, index, steps, (4, 8, 8))  # (B, steps, 4, 8, 8)
    draws = iter(noise[:, i] for i in range(1, steps))
    monkeypatch.setattr("diffusers.schedulers.scheduling_ddpm.randn_tensor", lambda *a, **k: next(draws))
    sched = make_scheduler()
    sched.set_timesteps(timesteps=dit_timesteps(steps))
    x = noise[:, 0]
    with torch.no_grad():
        for t in sched.timesteps:
            out = dit(x, timestep=t.repeat(len(x)), class_labels=labels).sample
            x = sched.step(out, t, x).prev_sample
    got = sample_latents(dit, labels, index=index, steps=steps, guidance=1.0, null_label=NULL, seed=seed,
                         progress=False)
    torch.testing.assert_close(got, x, rtol=1e-4, atol=1e-5)


class MockDiT(torch.nn.Module):
    """Output channel k of image b: (label_b + 1) * (k + 1) + x.mean(); the null label is 10."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(in_channels=4, out_channels=8, sample_size=2)

    def forward(self, hidden_states, timestep, class_labels):
        b = len(hidden_states)
        k = torch.arange(1, 9, dtype=torch.float32).view(1, 8, 1, 1)
        y = (class_labels.float() + 1).view(b, 1, 1, 1)
        base = hidden_states.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        return SimpleNamespace(sample=(y * k + base).expand(b, 8, 2, 2) + self.w)


@pytest.mark.parametrize("channels", [None, 3])
def test_guidance_channels(channels):
    x, labels, s = torch.randn(2, 4, 2, 2), torch.tensor([0, 4]), 4.0
    eps, v = guided_output(MockDiT(), x, 500, labels, s, channels, null_label=10)
    base = x.mean(dim=(1, 2, 3)).view(2, 1, 1, 1)
    k = torch.arange(1, 9, dtype=torch.float32).view(1, 8, 1, 1)
    cond = (labels.float() + 1).view(2, 1, 1, 1) * k + base  # (2, 8, 1, 1)
    uncond = 11.0 * k + base
    guided = uncond + s * (cond - uncond)
    g = 4 if channels is None else channels
    expect_eps = torch.cat([guided[:, :g], cond[:, g:4]], 1).expand(2, 4, 2, 2)
    torch.testing.assert_close(eps, expect_eps)
    torch.testing.assert_close(v, cond[:, 4:].expand(2, 4, 2, 2))  # variance: conditional half


def test_sample_images_and_files(dit, tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 8),
                        norm_num_groups=4, latent_channels=4, sample_size=32).eval()
    imgs = sample_images(dit, vae, torch.tensor([1, 2, 2]), index=torch.tensor([0, 0, 1]), steps=2,
                         null_label=NULL, seed=0, progress=False)
    assert imgs.shape == (3, 1, 32, 32) and imgs.dtype == torch.uint8

    save_grid(imgs, nrow=2, path=tmp_path / "grid.png", pad=2)
    grid = torch.from_numpy(__import__("numpy").array(Image.open(tmp_path / "grid.png")))
    assert grid.shape == (2 * 34 + 2, 2 * 34 + 2)
    assert torch.equal(grid[36:68, 2:34], imgs[2, 0])  # third image: second row, first column

    paths = save_pngs(imgs, torch.tensor([1, 2, 2]), {1: "n01", 2: "n02"}, tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in paths] == ["n01/0.png", "n02/0.png", "n02/1.png"]
    assert torch.equal(torch.from_numpy(__import__("numpy").array(Image.open(paths[2]))), imgs[2, 0])


def test_bf16_precision_is_repeatable_close_to_fp32_and_checked(dit):
    fp32 = run(dit, [0, 3, 3, 7], [0, 0, 1, 0], precision="fp32")
    assert torch.equal(fp32, run(dit, [0, 3, 3, 7], [0, 0, 1, 0]))  # fp32 is the CPU's default
    bf16 = run(dit, [0, 3, 3, 7], [0, 0, 1, 0], precision="bf16")
    assert bf16.dtype == torch.float32 and torch.equal(bf16, run(dit, [0, 3, 3, 7], [0, 0, 1, 0], precision="bf16"))
    # bf16 keeps 8 bits of mantissa in the forward: the trajectory moves, by far less than the latents' scale
    err = (bf16 - fp32).abs().max() / fp32.abs().max()
    assert 0 < err < 0.1, err
    with pytest.raises(ValueError, match="precision"):
        run(dit, [0], [0], precision="fp16")


def test_non_finite_guidance_stops_sampling_and_a_constant_set_is_refused(dit):
    """A nan guidance scale once gave all-black images that evaluated as a valid 21 %: sampling now
    stops at non-finite latents, and a set whose every pixel is one value is refused before it is saved."""
    from divdistill.generator.sample import require_varied

    for bad in (float("nan"), float("inf")):
        with pytest.raises(FloatingPointError, match="non-finite latents"):
            run(dit, [0, 3], [0, 0], guidance=bad)
    with pytest.raises(ValueError, match="degenerate: every pixel of all 4 images equals 0"):
        require_varied(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), "the set")
    one_pixel = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    one_pixel[2, 0, 3, 3] = 1
    require_varied(one_pixel, "the set")  # one differing pixel is enough: a set is only refused when constant


def test_guidance_one_makes_no_unconditional_pass(dit):
    """guidance 1 is conditional sampling: the DiT only ever sees the true labels, one pass per step
    (the study's guidance-1 points cost half a guided sampling)."""
    calls = []

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.config = dit, dit.config

        def forward(self, x, timestep, class_labels):
            calls.append(class_labels.clone())
            return self.inner(x, timestep=timestep, class_labels=class_labels)

    labels, index = [2, 7, 7], [0, 0, 1]
    got = run(Recording(), labels, index, guidance=1.0, steps=5)
    assert len(calls) == 5 and all(c.tolist() == labels for c in calls)
    assert torch.equal(got, run(dit, labels, index, guidance=1.0, steps=5))
    calls.clear()
    run(Recording(), labels, index, guidance=2.0, steps=5)  # guided: a doubled batch with the null label
    assert len(calls) == 5 and all(c.tolist() == labels + [NULL] * 3 for c in calls)
