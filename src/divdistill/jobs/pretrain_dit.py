"""divdistill pretrain-dit: the demo's stand-in for DiT-XL/2 (generator/pretrain.py)."""

from __future__ import annotations

from pathlib import Path

from .common import DEVICE, REQ, THREADS, TRACKING, imported, json_arg, log_every, tracking

ARGS = ((["--data"], REQ), (["--vae"], REQ), (["--params"], REQ), (["--out"], REQ), (["--checkpoints"], REQ),
        THREADS, DEVICE, TRACKING)


def run(args) -> None:
    import torch

    from ..data.datasets import load_meta, load_split
    from ..runtime.device import resolve
    from ..generator.latents import TRAIN_LATENTS, latent_cache
    from ..generator.pretrain import DiTConfig, train_dit
    from ..generator.sample import sample_images, save_grid
    from ..generator.weights import load_vae
    from ..io import atomic_dir, keep
    from ..tracking.runs import start_run

    imported(args.threads)
    p = json_arg(args.params)
    meta, train = load_meta(args.data), load_split(args.data, "train")
    labels = torch.tensor(meta["labels"])[train.labels]  # generator label space
    dev = resolve(args.device)
    vae = load_vae(args.vae, dev)
    with start_run(tracking(args), "pretrain", "dit", {"dataset": meta["name"], "seed": p["seed"],
                                                                 **p["dit"]}) as run:
        # the VAE job's posterior of these images when it was written by this VAE (fingerprint), else encoded
        post = latent_cache(vae, train.images, Path(args.vae) / TRAIN_LATENTS, flip=False, device=dev, write=False)
        mean, std = post["mean"], post["std"]
        num_classes = len(meta["labels"])
        dit = train_dit(mean, std, labels, num_classes, DiTConfig(**p["dit"]), p["seed"], log_every(run, 25),
                        checkpoint_path=Path(args.checkpoints) / "dit", device=dev,
                        checkpoint_every=p.get("checkpoint_every", 250))
        with atomic_dir(args.out) as tmp:
            dit.save_pretrained(tmp)
            grid_labels = torch.tensor(meta["labels"]).repeat_interleave(8)
            images = sample_images(dit, vae, grid_labels, null_label=num_classes, seed=0, device=dev,
                                   index=torch.arange(8).repeat(num_classes), **p["grid"])
            save_grid(images, 8, Path(tmp) / "samples.png")
        run.log_artifact(Path(args.out) / "samples.png")
        keep(args.out, run.run_id)
