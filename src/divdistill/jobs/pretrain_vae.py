"""divdistill pretrain-vae: the demo's stand-in for the SD VAE (generator/pretrain.py)."""

from __future__ import annotations

from pathlib import Path

from .common import DEVICE, REQ, THREADS, TRACKING, imported, json_arg, log_every, tracking

ARGS = ((["--data"], REQ), (["--params"], REQ), (["--out"], REQ), (["--checkpoints"], REQ), THREADS, DEVICE, TRACKING)


def run(args) -> None:
    import torch

    from ..data.datasets import load_split
    from ..runtime.device import resolve
    from ..generator.latents import TRAIN_LATENTS, decode, encode_posterior, fingerprint, save_latent_cache
    from ..generator.pretrain import VAEConfig, reconstruction_mse, train_vae
    from ..generator.sample import save_grid
    from ..io import atomic_dir, keep
    from ..tracking.runs import start_run

    imported(args.threads)
    p = json_arg(args.params)
    cfg = VAEConfig(**{**p["vae"], "block_out_channels": tuple(p["vae"]["block_out_channels"])})
    train = load_split(args.data, "train")
    with start_run(tracking(args), "pretrain", "vae", {"dataset": Path(args.data).name, "seed": p["seed"],
                                                                 **p["vae"]}) as run:
        dev = resolve(args.device)
        vae, (mean, std) = train_vae(train.images, cfg, p["seed"], log_every(run, 25),
                        checkpoint_path=Path(args.checkpoints) / "vae", device=dev,
                        checkpoint_every=p.get("checkpoint_every", 250))
        # a fixed 1000-image stride of the training set: on all 10000 it took ~65 s of a 3-minute job
        mse = reconstruction_mse(vae, train.images[:: max(1, len(train.images) // 1000)], device=dev)
        vae = vae.cpu()
        run.log_metrics({"recon_mse": mse, "scaling_factor": vae.config.scaling_factor})
        with atomic_dir(args.out) as tmp:
            vae.save_pretrained(tmp)
            # the training images' posterior from the pass that set the scaling factor: pretrain-dit
            # takes it instead of encoding them again (~30 s of the demo's critical path)
            save_latent_cache(Path(tmp) / TRAIN_LATENTS, {"mean": mean, "std": std},
                              fingerprint(vae, train.images))
            x = train.images[:: max(1, len(train.images) // 32)][:32]
            rec = decode(vae, encode_posterior(vae, x)[0])
            save_grid(torch.cat([x, rec]), 16, Path(tmp) / "reconstructions.png")
        run.log_artifact(Path(args.out) / "reconstructions.png")
        keep(args.out, run.run_id)
