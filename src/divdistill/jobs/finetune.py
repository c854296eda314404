"""divdistill finetune: DiffFit fine-tuning with the two memories (method/finetune.py)."""

from __future__ import annotations

from pathlib import Path

from .common import DEVICE, REQ, THREADS, TRACKING, imported, json_arg, tracking

ARGS = ((["--data"], REQ), (["--vae"], REQ), (["--dit"], REQ), (["--method"], REQ),
        (["--distill-seed"], {"type": int, **REQ}),
        (["--params"], {**REQ, "help": "JSON: every FinetuneConfig field (experiment/names.py finetune_settings)"}),
        (["--cache"], REQ), (["--checkpoints"], REQ), (["--out"], REQ), THREADS, DEVICE, TRACKING)


def run(args) -> None:
    import torch

    from ..data.datasets import load_meta, load_split
    from ..runtime.device import resolve
    from ..generator.latents import latent_cache
    from ..generator.sample import make_scheduler
    from ..generator.weights import load_dit, load_vae
    from ..io import atomic_dir, keep, write_json
    from ..method.finetune import FinetuneConfig, finetune
    from ..tracking.runs import start_run

    imported(args.threads)
    p = json_arg(args.params)
    cfg = FinetuneConfig(**p)
    meta, train = load_meta(args.data), load_split(args.data, "train")
    labels = torch.tensor(meta["labels"])[train.labels]
    dev = resolve(args.device)
    vae = load_vae(args.vae, dev, role="vae_encode", channels=meta["channels"])
    dit = load_dit(args.dit, dev, labels=meta["labels"], latent_channels=vae.config.latent_channels)
    params = {"dataset": meta["name"], "method": args.method, "distill_seed": args.distill_seed,
              "real_evict": cfg.real_evict, "gen_evict": cfg.gen_evict, **p}
    name = f"{meta['name']}/{args.method}/distill{args.distill_seed}"
    with start_run(tracking(args), "finetune", name, params,
                   tags={"dataset": meta["name"], "method": args.method}) as run:
        cache = latent_cache(vae, train.images, args.cache, flip=cfg.flip, device=dev)

        def on_step(log: dict) -> None:
            run.log_metrics({k: v for k, v in log.items() if k != "step" and isinstance(v, (int, float))},
                            step=log["step"])

        model, summary = finetune(dit, cache, labels, dit.config.num_embeds_ada_norm, make_scheduler(), cfg,
                                  args.distill_seed, checkpoint_dir=args.checkpoints, on_step=on_step,
                                  class_order=meta["labels"])
        run.log_metrics({f"final_{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
        with atomic_dir(args.out) as tmp:
            model.to("cpu").save_pretrained(tmp)
            write_json(Path(tmp) / "finetune.json", {"run_id": run.run_id, "params": params, "summary": summary})
        keep(args.out, run.run_id)
