"""Pixels <-> VAE latents, shared by pretraining, fine-tuning and sampling.

Images are uint8 (N, C, H, W); the VAE sees floats in [-1, 1] with 3 channels
at paper scale and 1 in the demo. Latents are *scaled* by the VAE config's
``scaling_factor`` (0.18215 for the SD VAEs; set from the measured latent std
for the demo VAE) so the DiT sees roughly unit variance, as in eq. (1).
"""

from __future__ import annotations

import torch


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (rounded, clamped)."""
    return x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def encode_posterior(vae, images: torch.Tensor, batch_size: int = 256, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled posterior mean and std of every image: (N, c, h, w) each, on the CPU.

    A latent sample is ``mean + std * eps`` (already scaled), so fine-tuning can
    draw a fresh z0 every step without running the encoder again.
    """
    s = vae.config.scaling_factor
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
