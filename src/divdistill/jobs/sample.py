"""divdistill sample: a generative method's distilled sets, every seed in one job (the models load
once), by its sampler (generator/samplers.py): at the largest IPC when its sets nest (smaller IPCs are
per-class prefixes), else at the one IPC the set is for (k-means samplers: MGD³, D⁴M)."""

from __future__ import annotations

import time

from .common import DEVICE, REQ, SEEDS, THREADS, TRACKING, imported, json_arg, pair_up, tracking

ARGS = ((["--data"], REQ), (["--vae"], REQ), (["--dit"], REQ), (["--method"], REQ),
        (["--distill-seed"], {"type": int, **REQ}), SEEDS,
        (["--max-ipc"], {"type": int, **REQ, "help": "images per class of each set"}),
        (["--cache"], {"help": "the dataset's latent cache: real training latents, for samplers that need them"}),
        (["--params"], REQ), (["--out"], {"nargs": "+", **REQ}),
        (["--grid"], {**REQ, "help": "sample grid of the first seed"}), THREADS, DEVICE, TRACKING)


def real_latents(cache_path, data) -> dict:
    """Generator label -> the posterior means (n, c, h, w) of the class's real training images."""
    import torch

    from ..data.datasets import load_meta, load_split
    from ..generator.latents import load_latent_cache

    meta, labels = load_meta(data), load_split(data, "train").labels
    cache, _ = load_latent_cache(cache_path)
    if len(cache["mean"]) != len(labels):
        raise ValueError(f"{cache_path} holds {len(cache['mean'])} latents, {data} {len(labels)} training images")
    return {y: cache["mean"][labels == i] for i, y in enumerate(meta["labels"]) if bool(torch.any(labels == i))}


def run(args) -> None:
    import torch

    from ..data.datasets import load_meta
    from ..experiment.methods import SAMPLERS, resolve
    from ..generator.latents import decode
    from ..generator.sample import require_varied, save_grid
    from ..generator.weights import load_dit, load_vae
    from ..io import keep, save_tensors
    from ..runtime.device import resolve as resolve_device
    from ..tracking.runs import start_run

    imported(args.threads)
    p = json_arg(args.params)
    settings = {k: v for k, v in p.items() if k not in ("sampler", "function")}
    vae_batch = settings.pop("vae_batch_size", 64)
    sampler = p.get("sampler", "ddpm")
    spec = SAMPLERS.get(sampler)
    draw = resolve(p.get("function") or spec.target)
    real = real_latents(args.cache, args.data) if args.cache else None
    if (spec is not None and spec.needs_real) and real is None:
        raise SystemExit(f"sampler {sampler} needs the real training latents: pass --cache")
    meta = load_meta(args.data)
    dev = resolve_device(args.device)
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
            latents = draw(dit, torch.tensor(meta["labels"])[local], index=index, seed=seed, ipc=ipc, real=real,
                           null_label=dit.config.num_embeds_ada_norm, device=dev, **settings)
            images = decode(vae, latents.to(vae.device), batch_size=vae_batch)
            run.log_metrics({"images_per_s": len(images) / (time.perf_counter() - t0)}, step=seed)
            require_varied(images, f"the distilled set of seed {seed} ({out})")
            save_tensors(out, {"images": images, "labels": local},
                         {**{k: v for k, v in params.items() if k != "seeds"}, "seed": seed, "run_id": run.run_id})
            keep(out, run.run_id)
            if seed == args.seeds[0]:
                shown = min(ipc, 10)
                save_grid(images[index < shown], shown, args.grid)
        run.log_artifact(args.grid)
