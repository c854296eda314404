"""divdistill sample: a generative method's distilled sets, every seed in one job (the models load
once), at the largest IPC: smaller IPCs are per-class prefixes (generator/sample.py)."""

from __future__ import annotations

import time

from .common import DEVICE, REQ, SEEDS, THREADS, TRACKING, imported, json_arg, pair_up, tracking

ARGS = ((["--data"], REQ), (["--vae"], REQ), (["--dit"], REQ), (["--method"], REQ),
        (["--distill-seed"], {"type": int, **REQ}), SEEDS, (["--max-ipc"], {"type": int, **REQ}),
        (["--params"], REQ), (["--out"], {"nargs": "+", **REQ}),
        (["--grid"], {**REQ, "help": "sample grid of the first seed"}), THREADS, DEVICE, TRACKING)


def run(args) -> None:
    import torch

    from ..data.datasets import load_meta
    from ..runtime.device import resolve
    from ..generator.sample import require_varied, sample_images, save_grid
    from ..generator.weights import load_dit, load_vae
    from ..io import keep, save_tensors
    from ..tracking.runs import start_run

    imported(args.threads)
    p = json_arg(args.params)
    meta = load_meta(args.data)
    dev = resolve(args.device)
    vae = load_vae(args.vae, dev, role="vae_decode", channels=meta["channels"])
    dit = load_dit(args.dit, dev, labels=meta["labels"], latent_channels=vae.config.latent_channels)
    ipc, ncls = args.max_ipc, len(meta["labels"])
    local = torch.arange(ncls).repeat_interleave(ipc)  # class-major, ordered within class: nested IPCs
    index = torch.arange(ipc).repeat(ncls)
    pair_up({"--seeds": args.seeds, "--out": args.out})
    params = {"dataset": meta["name"], "method": args.method, "distill_seed": args.distill_seed,
              "seeds": args.seeds, "max_ipc": ipc, "generator": args.dit, **p}
    name = f"{meta['name']}/{args.method}/distill{args.distill_seed}"
    with start_run(tracking(args), "sample", name, params,
                   tags={"dataset": meta["name"], "method": args.method}) as run:
        for seed, out in zip(args.seeds, args.out):
            t0 = time.perf_counter()
            images = sample_images(dit, vae, torch.tensor(meta["labels"])[local],
                                   null_label=dit.config.num_embeds_ada_norm, seed=seed, index=index, device=dev, **p)
            run.log_metrics({"images_per_s": len(images) / (time.perf_counter() - t0)}, step=seed)
            require_varied(images, f"the distilled set of seed {seed} ({out})")
            save_tensors(out, {"images": images, "labels": local},
                         {**{k: v for k, v in params.items() if k != "seeds"}, "seed": seed, "run_id": run.run_id})
            keep(out, run.run_id)
            if seed == args.seeds[0]:
                shown = min(ipc, 10)
                save_grid(images[index < shown], shown, args.grid)
        run.log_artifact(args.grid)
