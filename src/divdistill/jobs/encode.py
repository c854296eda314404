"""divdistill encode: the VAE posterior of every training image and of its flip, computed once
(generator/latents.py latent_cache)."""

from __future__ import annotations

from .common import DEVICE, REQ, THREADS, imported

ARGS = ((["--data"], REQ), (["--vae"], REQ), (["--out"], REQ), THREADS, DEVICE)


def run(args) -> None:
    from ..data.datasets import load_meta, load_split
    from ..runtime.device import resolve
    from ..generator.latents import latent_cache
    from ..generator.weights import load_vae

    imported(args.threads, mlflow=False)
    dev = resolve(args.device)
    meta = load_meta(args.data)
    vae = load_vae(args.vae, dev, role="vae_encode", channels=meta["channels"])
    latent_cache(vae, load_split(args.data, "train").images, args.out, flip=True, device=dev)
