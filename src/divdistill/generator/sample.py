"""Classifier-free-guided ancestral sampling from a class-conditional learned-variance DiT.

DiT's sampler (``sample.py`` of facebookresearch/DiT): the 1000-step linear-beta DDPM respaced to
``steps`` evenly spaced timesteps, ancestral steps with the learned-range variance, classifier-free
guidance on a doubled batch (cond | null label) whose guided eps is used for both halves while the
variance comes from the conditional half. Here the batch is processed in chunks and every image's
noise (its initial z_T and each step's noise) is drawn up front from its own generator seeded with
(seed, label, index), so an image is the same whichever images share its batch.

diffusers' ``DDPMScheduler`` vs DiT's respacing (checked against diffusers 0.42 and DiT's
``respace.py``; ``tests/test_sample.py`` pins both):
- timesteps: DiT keeps 999, 979, ..., 0 (about i * 999 / (steps - 1), rounded). diffusers' default
  ``timestep_spacing="leading"`` keeps 980, 960, ..., 0 instead (never the noisiest step 999).
  ``"linspace"`` gives DiT's list for 50 steps but differs by one at a few counts (21, 23, 31, ...:
  DiT accumulates the stride in floats, so 499.5 can round either way); :func:`dit_timesteps`
  computes DiT's list exactly and is passed to ``set_timesteps(timesteps=...)``.
- respaced betas 1 - abar_t / abar_prev and the learned-range interpolation between log(beta) and
  log(posterior variance) are the same in both (diffusers' ``step`` uses the previous *kept*
  timestep). They differ only at the last step (t = 0), where DiT clips the log posterior variance
  and diffusers clamps it at 1e-20: neither adds noise at t = 0, so samples do not change.
- ``clip_sample`` defaults to True in diffusers (x0 clamped to [-1, 1]); DiT samples latents
  unclipped, so it is off.
The step itself is written out below (rather than calling ``scheduler.step``) only because that
draws its noise itself; the tests check it against ``scheduler.step`` with the same noise.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from PIL import Image
from tqdm import tqdm

from ..runtime.device import dit_autocast
from ..io import atomic_path
from .latents import decode

NUM_TRAIN_TIMESTEPS = 1000


def make_scheduler() -> DDPMScheduler:
    """DiT's diffusion: 1000 steps, linear betas 1e-4..0.02, learned-range sigma (see module doc)."""
    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="linear", beta_start=1e-4,
                         beta_end=0.02, variance_type="learned_range", clip_sample=False,
                         timestep_spacing="linspace")


def image_seed(seed: int, label: int, index: int) -> int:
    """Seed of image (label, index): a hash of the triple, so nearby triples get unrelated streams."""
    return int(np.random.SeedSequence([seed, label, index]).generate_state(1, np.uint64)[0] >> 1)


def image_noise(seed: int, labels: torch.Tensor, index: torch.Tensor, steps: int, shape: tuple) -> torch.Tensor:
    """Every draw each image needs: (B, steps, *shape); [:, 0] is z_T, [:, i] the noise of step i - 1
    (the last step, t = 0, adds none). Drawn on the CPU so the images do not depend on the device."""
    out = torch.empty(len(labels), steps, *shape)
    for i, (y, k) in enumerate(zip(labels.tolist(), index.tolist())):
        g = torch.Generator().manual_seed(image_seed(seed, y, k))
        torch.randn(steps, *shape, generator=g, out=out[i])
    return out


def dit_timesteps(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """DiT's ``space_timesteps(T, str(steps))`` (one section), in descending order."""
    stride = (num_train_timesteps - 1) / (steps - 1) if steps > 1 else 1
    cur, kept = 0.0, []
    for _ in range(steps):
        kept.append(round(cur))  # Python's round, accumulated stride: exactly as DiT's respace.py
        cur += stride
    return kept[::-1]


def step_table(scheduler: DDPMScheduler, steps: int) -> list[dict]:
    """Per respaced step: timestep t and the float64 coefficients of p(x_prev | x_t) (DDPM eq. 7)."""
    scheduler.set_timesteps(timesteps=dit_timesteps(steps, scheduler.config.num_train_timesteps))
    ts = scheduler.timesteps.tolist()
    abar = scheduler.alphas_cumprod.double()
    table = []
    for i, t in enumerate(ts):
        a_t = abar[t].item()
        a_prev = abar[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        beta = 1 - a_t / a_prev  # respaced beta
        post_var = max(beta * (1 - a_prev) / (1 - a_t), 1e-20)
        table.append({
            "t": t, "sqrt_abar": a_t**0.5, "sqrt_1m_abar": (1 - a_t) ** 0.5,
            "coef_x0": a_prev**0.5 * beta / (1 - a_t), "coef_xt": (1 - beta) ** 0.5 * (1 - a_prev) / (1 - a_t),
            "min_log": float(np.log(post_var)), "max_log": float(np.log(beta)),
        })
    return table


def ancestral_step(x: torch.Tensor, eps: torch.Tensor, v: torch.Tensor, k: dict, noise: torch.Tensor | None,
                   mode: torch.Tensor | None = None, mode_scale: float = 0.0):
    """x_t, eps, v (B, c, h, w) -> x_prev; learned-range log variance frac*log(beta) + (1-frac)*log(post var).

    ``mode`` (B, c, h, w): MGD³'s pull of the predicted clean latent x0_hat toward it, added to the mean,
    x_prev = mean + mode_scale * sigma_t * (mode - x0_hat) + sigma_t * noise (its reference code's sign:
    toward the mode; docs/protocol.md). None at t = 0, where no noise is added either."""
    x0 = (x - k["sqrt_1m_abar"] * eps) / k["sqrt_abar"]
    mean = k["coef_x0"] * x0 + k["coef_xt"] * x
    if noise is None:  # t = 0
        return mean
    frac = (v + 1) / 2
    logvar = frac * k["max_log"] + (1 - frac) * k["min_log"]
    sigma = torch.exp(0.5 * logvar)
    if mode is not None:
        mean = mean + mode_scale * sigma * (mode - x0)
    return mean + sigma * noise


def guided_output(dit, x: torch.Tensor, t: int, labels: torch.Tensor, guidance: float,
                  guidance_channels: int | None, null_label: int,
                  precision: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps, v), each (B, c, h, w) in float32: eps guided on its first guidance_channels channels (all if
    None), the rest of eps and the variance v from the conditional output. guidance == 1 runs only the
    conditional pass (it is the conditional model exactly, at half the cost). ``precision``: the DiT
    forward's, see :func:`divdistill.runtime.device.dit_autocast` (the outputs are returned in fp32 either way)."""
    c = x.shape[1]
    dtype = next(dit.parameters()).dtype
    if guidance == 1.0:
        tt = torch.full((len(x),), t, dtype=torch.long, device=x.device)
        with dit_autocast(x.device, precision):
            out = dit(x.to(dtype), timestep=tt, class_labels=labels).sample.float()  # (B, 2c, h, w)
        return out[:, :c], out[:, c:]
    tt = torch.full((2 * len(x),), t, dtype=torch.long, device=x.device)
    y2 = torch.cat([labels, torch.full_like(labels, null_label)])
    with dit_autocast(x.device, precision):
        out = dit(torch.cat([x, x]).to(dtype), timestep=tt, class_labels=y2).sample.float()  # (2B, 2c, h, w)
    cond, uncond = out.chunk(2)
    g = c if guidance_channels is None else guidance_channels
    eps = cond[:, :c].clone()
    eps[:, :g] = uncond[:, :g] + guidance * (cond[:, :g] - uncond[:, :g])
    return eps, cond[:, c:]


@torch.no_grad()
def sample_latents(dit, labels: torch.Tensor, *, steps: int = 50, guidance: float = 4.0,
                   guidance_channels: int | None = None, null_label: int, seed: int, index: torch.Tensor,
                   batch_size: int = 64, device="cpu", precision: str | None = None,
                   progress: bool = True, modes: torch.Tensor | None = None, mode_scale: float = 0.0,
                   mode_stop: int = 0, start: torch.Tensor | None = None, strength: float = 1.0) -> torch.Tensor:
    """Scaled latents (N, c, h, w) on the CPU for generator labels (N,) and per-class image indices (N,).

    ``dit`` must already be on ``device``; it is run in eval mode (no label dropout) and its mode restored.
    ``guidance_channels=3`` is DiT's original (guide eps channels 0..2 only); None guides all channels.
    ``precision`` "bf16" runs the DiT forward under bf16 autocast (also on the CPU), "fp32" without,
    None as :func:`divdistill.runtime.device.dit_autocast` decides per device; the update stays fp32.
    Two numberings of the chain's ``steps`` steps: its position i (0 at the noisiest, as run) and the
    respaced index steps - 1 - i (the reference code's ``t``, 0 at the last step).
    ``modes`` (N, c, h, w): each chain pulled toward its mode (MGD³, :func:`ancestral_step`) while the
    respaced index is above ``mode_stop``.
    ``start`` (N, c, h, w): clean latents each chain starts from (D⁴M's prototypes), noised by eq. (1) to
    position ``steps - int(steps * strength)`` (DDPM img2img's start) and denoised from there; strength
    0 returns them unchanged. The noise of every step is the image's own, as without them.
    """
    labels, index = labels.long().cpu(), index.long().cpu()
    if labels.shape != index.shape or labels.ndim != 1:
        raise ValueError(f"labels {tuple(labels.shape)} and index {tuple(index.shape)} must be equal 1-D shapes")
    c, s = dit.config.in_channels, dit.config.sample_size
    if dit.config.out_channels != 2 * c:
        raise ValueError("expected a learned-variance DiT (out_channels == 2 * in_channels)")
    table = step_table(make_scheduler(), steps)
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    first = 0 if start is None else steps - int(steps * strength)  # the position of the first step run
    was_training = dit.training
    dit.eval()
    out = []
    for lo in tqdm(range(0, len(labels), batch_size), desc="sample", file=sys.stderr, disable=not progress,
                   leave=False):
        y = labels[lo:lo + batch_size]
        noise = image_noise(seed, y, index[lo:lo + batch_size], steps, (c, s, s)).to(device)  # (B, steps, c, s, s)
        y = y.to(device)
        x = noise[:, 0]  # (B, c, s, s)
        if start is not None:  # eq. (1) at the first step run: sqrt(abar_t) z0 + sqrt(1 - abar_t) eps
            z0 = start[lo:lo + batch_size].to(device)
            x = z0 if first == steps else table[first]["sqrt_abar"] * z0 + table[first]["sqrt_1m_abar"] * x
        mode = None if modes is None else modes[lo:lo + batch_size].to(device)
        for i, k in enumerate(table[first:], start=first):
            eps, v = guided_output(dit, x, k["t"], y, guidance, guidance_channels, null_label, precision)
            pull = mode if steps - 1 - i > mode_stop else None  # the respaced index of step i
            x = ancestral_step(x, eps, v, k, noise[:, i + 1] if i + 1 < steps else None, pull, mode_scale)
        out.append(x.cpu())
    dit.train(was_training)
    z = torch.cat(out) if out else torch.empty(0, c, s, s)
    if not torch.isfinite(z).all():
        raise FloatingPointError(f"sampling produced non-finite latents ({int((~torch.isfinite(z)).sum())} values; "
                                 f"guidance {guidance}, {steps} steps): the generator or its settings are broken")
    return z


def require_varied(images: torch.Tensor, what: str) -> None:
    """Refuse a degenerate image set (N, C, H, W): every pixel of every image one value (e.g. all black)."""
    if len(images) and int(images.max()) == int(images.min()):
        raise ValueError(f"{what} is degenerate: every pixel of all {len(images)} images equals "
                         f"{int(images.min())}; nothing was saved")


def sample_images(dit, vae, labels: torch.Tensor, *, vae_batch_size: int = 64, **kwargs) -> torch.Tensor:
    """uint8 images (N, C, H, W): :func:`sample_latents` (same keyword arguments) decoded by ``vae``."""
    return decode(vae, sample_latents(dit, labels, **kwargs).to(vae.device), batch_size=vae_batch_size)


def _pil(img: torch.Tensor) -> Image.Image:
    """uint8 (C, H, W), C in {1, 3} -> PIL image."""
    arr = img.permute(1, 2, 0).cpu().numpy()  # (H, W, C)
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def _save_png(img: Image.Image, path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_grid(images: torch.Tensor, nrow: int, path, pad: int = 2) -> None:
    """uint8 images (N, C, H, W) -> one PNG, ``nrow`` images per row, separated by ``pad`` black pixels."""
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = torch.zeros(c, rows * (h + pad) + pad, nrow * (w + pad) + pad, dtype=torch.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = img
    _save_png(_pil(grid), path)


def save_pngs(images: torch.Tensor, labels: torch.Tensor, class_dirnames: Mapping[int, str] | Sequence[str],
              out_dir, index: torch.Tensor | None = None) -> list[Path]:
    """Paper layout ``out_dir/<dirname of label>/<index>.png``; index defaults to each image's rank among
    the images of its label (0, 1, ...). Returns the paths written, in input order."""
    counts: dict[int, int] = {}
    paths = []
    for i, (img, y) in enumerate(zip(images, labels.tolist())):
        k = int(index[i]) if index is not None else counts.get(y, 0)
        counts[y] = counts.get(y, 0) + 1
        path = Path(out_dir) / class_dirnames[y] / f"{k}.png"
        _save_png(_pil(img), path)
        paths.append(path)
    return paths
