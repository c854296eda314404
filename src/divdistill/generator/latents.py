"""Pixels <-> VAE latents, shared by pretraining, fine-tuning and sampling.

Images are uint8 (N, C, H, W); the VAE sees floats in [-1, 1] with 3 channels
at paper scale and 1 in the demo. Latents are *scaled* by the VAE config's
``scaling_factor`` (0.18215 for the SD VAEs; set from the measured latent std
for the demo VAE) so the DiT sees roughly unit variance, as in eq. (1).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

from ..io import load_tensors, save_tensors


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (rounded, clamped)."""
    return x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def encode_posterior(vae, images: torch.Tensor, batch_size: int = 256, device="cpu",
                     scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled posterior mean and std of every image: (N, c, h, w) each, on the CPU.

    A latent sample is ``mean + std * eps`` (already scaled), so fine-tuning can
    draw a fresh z0 every step without running the encoder again. ``scale``: the
    VAE config's ``scaling_factor`` unless given (1.0: the raw posterior).
    """
    s = vae.config.scaling_factor if scale is None else scale
    means, stds = [], []
    for i in range(0, len(images), batch_size):
        x = to_model_range(images[i:i + batch_size].to(device))
        dist = vae.encode(x).latent_dist
        means.append((dist.mean * s).cpu())
        stds.append((dist.std * s).cpu())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def decode(vae, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Scaled latents (N, c, h, w) -> uint8 images (N, C, H, W) on the CPU."""
    s = vae.config.scaling_factor
    out = [to_uint8(vae.decode(z[i:i + batch_size] / s).sample).cpu() for i in range(0, len(z), batch_size)]
    return torch.cat(out)


# ----------------------------------------------------------------------------- latent cache

# A cache is {"mean", "std"} (N, c, h, w) scaled posterior of every training image, plus
# {"mean_flip", "std_flip"} for its horizontal flip (fine-tuning's; the demo VAE's own job writes one
# without flips, TRAIN_LATENTS in its folder, for the DiT's pretraining). The VAE is not
# flip-equivariant, so the flip is encoded from flipped pixels rather than by flipping latents.


TRAIN_LATENTS = "train_latents.safetensors"  # in the demo VAE's folder: its training images' posterior


def cache_latents(vae, images: torch.Tensor, flip: bool = True, batch_size: int = 256, device="cpu") -> dict:
    """Encode every uint8 image (N, C, H, W) once (and its horizontal flip once): scaled posterior
    mean and std, each (N, c, h, w) float on the CPU."""
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("mean", "std", "mean_flip", "std_flip")}
    for i in range(0, len(images), batch_size):  # chunked: never holds a flipped copy of all images
        x = images[i:i + batch_size]
        for suffix, xs in [("", x)] + ([("_flip", x.flip(-1))] if flip else []):
            m, s = encode_posterior(vae, xs, batch_size, device)
            parts["mean" + suffix].append(m)
            parts["std" + suffix].append(s)
    return {k: torch.cat(v) for k, v in parts.items() if v}


def fingerprint(vae, images: torch.Tensor) -> str:
    """sha256 over the images and the VAE's weights: tells a cache written for other inputs."""
    h = hashlib.sha256(images.cpu().contiguous().numpy())
    for k, v in vae.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_latent_cache(path, cache: dict, fp: str | None = None) -> None:
    save_tensors(path, cache, {"fingerprint": fp})


def load_latent_cache(path) -> tuple[dict, str | None]:
    """(cache, fingerprint it was saved with)."""
    cache, meta = load_tensors(path)
    return cache, meta.get("fingerprint")


def latent_cache(vae, images: torch.Tensor, path, flip: bool = True, batch_size: int = 256, device="cpu",
                 write: bool = True) -> dict:
    """The cache at ``path`` if it was written for these images, this VAE and this flip setting;
    otherwise encode (and, with ``write``, save it atomically)."""
    fp = fingerprint(vae, images)
    if Path(path).exists():
        cache, old = load_latent_cache(path)
        if old == fp and ("mean_flip" in cache) == flip:
            print(f"latents: {len(images)} images' posterior read from {path}", file=sys.stderr)
            return cache
    cache = cache_latents(vae, images, flip, batch_size, device)
    if write:
        save_latent_cache(path, cache, fp)
    print(f"latents: {len(images)} images encoded" + (f", saved to {path}" if write else
          f" ({path} holds none for these images and this VAE)"), file=sys.stderr)
    return cache
