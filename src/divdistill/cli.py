"""One entry point for every job the workflow runs.

    divdistill prepare  --dataset fashion-hard --params '{...}' --out results/data/fashion-hard
    divdistill select   --method random --data results/data/fashion-hard --seeds 0 1 --max-ipc 50 --out A B
    divdistill evaluate --data results/data/fashion-hard --distilled A B --cell '{...}' --seeds 0 1 --out ...
    divdistill render   --spec '{...}' --results ... --tables reports/tables ...
    divdistill check    --config params.yaml

Rules pass resolved hyper-parameters as JSON so Snakemake's params trigger re-runs
exactly the jobs whose numbers changed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

from .experiment import config as config_mod
from .device import resolve
from .io import keep, write_json
from .tracking.runs import start_run


def _imported(threads: int | None = None) -> None:
    """A job's imports are done (torch, diffusers, and MLflow's client here: every job logs a run): set
    torch's threads and, in a ``divdistill`` process (``main`` turned the cyclic garbage collector off
    for the imports), freeze the millions of objects the imports built (no collection walks them again,
    and the interpreter's exit skips them) and turn the collector back on. Measured: 1.7 s less import
    time and 1.2 s less exit per generator job (of ~7 s start-up)."""
    from .tracking.runs import preload

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    preload()
    if not gc.isenabled():  # a process of its own; a caller's (tests') collector is left alone
        gc.freeze()
        gc.enable()


def _no_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def _json(text: str | None) -> dict:
    """A JSON argument; NaN and Infinity (which Python's json reads by default) are refused."""
    if text is None:
        raise SystemExit("missing --tracking (or $DIVDISTILL_TRACKING): run the job through Snakemake")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as e:  # JSONDecodeError is a ValueError
        raise SystemExit(f"invalid JSON argument: {e}: {text[:200]}")


def cmd_prepare(args) -> None:
    from .data.datasets import get_spec, prepare

    _imported()
    p = _json(args.params)  # config.prepare_args of the dataset
    params = {"dataset": args.dataset, **p}
    if get_spec(args.dataset).source == "imagenet":
        p["workers"] = args.threads  # decoding threads
    with start_run(_json(args.tracking), "prepare", args.dataset, params) as run:
        meta = prepare(args.dataset, out=args.out, **p)
        run.log_metrics({"num_classes": len(meta["class_names"])})
        if meta.get("test_split"):
            run.set_tag("test_split", meta["test_split"])


def cmd_features(args) -> None:
    import torch

    from .data.augment import AugmentConfig
    from .data.datasets import load_split
    from .baselines.features import save_feature_net, train_feature_net

    _imported(args.threads)
    dev = resolve(args.device)
    p = _json(args.params)
    train = load_split(args.data, "train")
    aug = AugmentConfig(**p["augment"])
    params = {"dataset": Path(args.data).name, **p}
    with start_run(_json(args.tracking), "features", params["dataset"], params) as run:
        net = train_feature_net(train, net=p["model"], width=p["width"], depth=p["depth"], epochs=p["epochs"],
                                batch_size=p["batch_size"], lr=p["lr"], seed=p["seed"], augment=aug, device=dev,
                                on_epoch=lambda epoch, m: run.log_metrics(m, step=epoch), progress=True)
        save_feature_net(net, args.out)
        keep(args.out, run.run_id)


def cmd_select(args) -> None:
    """Every seed's selection in one job (the features embedded once), one MLflow run per seed."""
    import torch

    from .data.datasets import load_split
    from .io import save_tensors
    from .baselines.select import select

    _imported(args.threads)
    if len(args.seeds) != len(args.out):
        raise SystemExit(f"--seeds ({len(args.seeds)}) and --out ({len(args.out)}) must pair up")
    train, tracking = load_split(args.data, "train"), _json(args.tracking)
    features = None
    if args.features:
        from .baselines.features import embed, load_feature_net

        net, aug = load_feature_net(args.features)
        features = embed(net, train.images, net.config["resolution"], augment=aug,
                         device=resolve(args.device))  # (N, D)
    for seed, out in zip(args.seeds, args.out):
        params = {"dataset": Path(args.data).name, "method": args.method, "distill_seed": 0, "seed": seed,
                  "max_ipc": args.max_ipc, "features": args.features}
        with start_run(tracking, "select", f"{params['dataset']}/{args.method}/seed{seed}", params) as run:
            images, labels, idx = select(args.method, train, args.max_ipc, seed, features)
            save_tensors(out, {"images": images, "labels": labels},
                         {**params, "source_index": idx.tolist(), "run_id": run.run_id})
            keep(out, run.run_id)
            run.log_metrics({"num_images": len(labels)})


def cmd_dm(args) -> None:
    import dataclasses

    import torch

    from .data.augment import AugmentConfig
    from .data.datasets import load_split
    from .baselines.dm import DMConfig, DSAConfig, distill_dm
    from .io import save_tensors
    from .generator.sample import require_varied

    _imported(args.threads)
    p = _json(args.params)
    train = load_split(args.data, "train")
    aug = AugmentConfig(**p["augment"])
    cfg = DMConfig(ipc=args.ipc, iterations=p["iterations"], lr_img=p["lr_img"], momentum=p["momentum"],
                   batch_real=p["batch_real"], net=p["model"], width=p["width"], depth=p["depth"],
                   dsa=DSAConfig(), augment=aug)
    params = {"dataset": Path(args.data).name, "method": "dm", "ipc": args.ipc, "distill_seed": 0,
              "seed": args.seed, **p, "dsa": dataclasses.asdict(cfg.dsa)}
    name = f"{params['dataset']}/dm/ipc{args.ipc}/seed{args.seed}"
    with start_run(_json(args.tracking), "dm", name, params) as run:
        log = _log_every(run, max(1, p["iterations"] // 100))
        res = distill_dm(train, cfg, args.seed, device=resolve(args.device), on_step=lambda it, loss: log(it, {"loss_match": loss}),
                         progress=True)
        run.log_metrics({"loss_match_first": res.losses[0], "loss_match_last": res.losses[-1]}
                        if res.losses else {})
        require_varied(res.images, f"the DM set ({args.out})")
        save_tensors(args.out, {"images": res.images, "labels": res.labels},
                     {**params, "init_index": res.init_index.tolist(), "run_id": run.run_id})
        keep(args.out, run.run_id)


def cmd_evaluate(args) -> None:
    """Every seed of ``--seeds`` in turn (one process: the imports and the data load are paid once),
    each with its own MLflow run, checkpoints under ``<checkpoints>/seed<k>`` and result file."""
    import torch

    from .data.augment import AugmentConfig
    from .data.datasets import load_meta, load_split, take_ipc
    from .io import load_tensors
    from .evaluate.nets import build_net
    from .evaluate.trainer import TrainConfig, seed_everything, train_and_test

    _imported(args.threads)
    cell, hp = _json(args.cell), _json(args.params)
    full = cell["method"] == "full"
    if len(args.out) != len(args.seeds) or (not full and len(args.distilled or []) != len(args.seeds)):
        raise SystemExit(f"--seeds ({len(args.seeds)}), --out ({len(args.out)}) and --distilled "
                         f"({len(args.distilled or [])}, none for full) must pair up")
    meta = load_meta(args.data)
    train, test = load_split(args.data, "train"), load_split(args.data, "test")
    aug = AugmentConfig(**hp["augment"])
    train_cfg = TrainConfig(**{k: v for k, v in hp.items() if k not in ("augment", "net")}, augment=aug)
    tracking = _json(args.tracking)
    for i, (seed, out) in enumerate(zip(args.seeds, args.out)):
        cell_s = {**cell, "seed": seed}
        if full:
            x, y = train.images, train.labels
        else:
            tensors, _ = load_tensors(args.distilled[i])
            x, y = take_ipc(tensors["images"], tensors["labels"], int(cell["ipc"]), source=args.distilled[i])
        name = "/".join(str(cell[k]) for k in ("dataset", "method", "ipc", "model")) + \
            f"/distill{cell['distill_seed']}-seed{seed}"
        t0 = time.perf_counter()
        with start_run(tracking, "evaluate", name, {**cell_s, **hp, "num_train": len(y)},
                       tags={k: cell[k] for k in ("dataset", "method", "ipc", "model")}) as run:
            seed_everything(seed)
            net = build_net(cell["model"], num_classes=len(meta["class_names"]), channels=meta["channels"],
                            resolution=hp["resolution"], **hp["net"])
            res = train_and_test(net, x, y, test.images, test.labels, train_cfg, seed=seed,
                                 device=resolve(args.device),
                                 checkpoint_dir=None if args.checkpoints is None else Path(args.checkpoints) / f"seed{seed}",
                                 checkpoint_every=args.checkpoint_every,
                                 on_epoch=lambda epoch, m: run.log_metrics(m, step=epoch), progress=True)
            final = {"test_acc": res["test_acc"], "best_test_acc_over_training": res["best_test_acc"],
                     "train_loss_final": res["train_loss"], "wall_s": time.perf_counter() - t0}
            run.log_metrics(final, step=train_cfg.epochs)
            write_json(out, {"cell": cell_s, "params": hp, "run_id": run.run_id, "num_train": len(y),
                             "test_acc": res["test_acc"], "best_test_acc": res["best_test_acc"],
                             "best_epoch": res["best_epoch"], "curve": res["curve"],
                             "train_loss_final": res["train_loss"], "wall_s": final["wall_s"]})
            keep(out, run.run_id)


def _log_every(run, every: int):
    """on_step callback logging every ``every``-th step's numeric metrics."""
    def log(step: int, metrics: dict) -> None:
        if step % every == 0:
            run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)
    return log


def cmd_pretrain_vae(args) -> None:
    import torch

    from .data.datasets import load_split
    from .io import atomic_dir
    from .generator.pretrain import VAEConfig, reconstruction_mse, train_vae
    from .generator.sample import save_grid

    _imported(args.threads)
    p = _json(args.params)
    cfg = VAEConfig(**{**p["vae"], "block_out_channels": tuple(p["vae"]["block_out_channels"])})
    train = load_split(args.data, "train")
    with start_run(_json(args.tracking), "pretrain", "vae", {"dataset": Path(args.data).name, "seed": p["seed"],
                                                              **p["vae"]}) as run:
        dev = resolve(args.device)
        vae = train_vae(train.images, cfg, p["seed"], _log_every(run, 25),
                        checkpoint_path=Path(args.checkpoints) / "vae", device=dev,
                        checkpoint_every=p.get("checkpoint_every", 250))
        # a fixed 1000-image stride of the training set: on all 10000 it took ~65 s of a 3-minute job
        mse = reconstruction_mse(vae, train.images[:: max(1, len(train.images) // 1000)], device=dev)
        vae = vae.cpu()
        run.log_metrics({"recon_mse": mse, "scaling_factor": vae.config.scaling_factor})
        with atomic_dir(args.out) as tmp:
            vae.save_pretrained(tmp)
            from .generator.latents import decode, encode_posterior

            x = train.images[:: max(1, len(train.images) // 32)][:32]
            rec = decode(vae, encode_posterior(vae, x)[0])
            save_grid(torch.cat([x, rec]), 16, Path(tmp) / "reconstructions.png")
        run.log_artifact(Path(args.out) / "reconstructions.png")
        keep(args.out, run.run_id)


def cmd_pretrain_dit(args) -> None:
    import torch

    from .data.datasets import load_meta, load_split
    from .io import atomic_dir
    from .generator.latents import encode_posterior
    from .generator.pretrain import DiTConfig, train_dit
    from .generator.sample import sample_images, save_grid
    from .generator.weights import load_vae

    _imported(args.threads)
    p = _json(args.params)
    meta, train = load_meta(args.data), load_split(args.data, "train")
    labels = torch.tensor(meta["labels"])[train.labels]  # generator label space
    dev = resolve(args.device)
    vae = load_vae(args.vae, dev)
    with start_run(_json(args.tracking), "pretrain", "dit", {"dataset": meta["name"], "seed": p["seed"],
                                                              **p["dit"]}) as run:
        mean, std = encode_posterior(vae, train.images, device=dev)
        num_classes = len(meta["labels"])
        dit = train_dit(mean, std, labels, num_classes, DiTConfig(**p["dit"]), p["seed"], _log_every(run, 25),
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


def cmd_encode(args) -> None:
    import torch

    from .data.datasets import load_meta, load_split
    from .method.finetune import latent_cache
    from .generator.weights import load_vae

    _imported(args.threads)
    dev = resolve(args.device)
    meta = load_meta(args.data)
    vae = load_vae(args.vae, dev, role="vae_encode", channels=meta["channels"])
    latent_cache(vae, load_split(args.data, "train").images, args.out, flip=True, device=dev)


def cmd_finetune(args) -> None:
    import torch

    from .data.datasets import load_meta, load_split
    from .method.finetune import FinetuneConfig, evictions, finetune, latent_cache
    from .io import atomic_dir
    from .generator.sample import make_scheduler
    from .generator.weights import load_dit, load_vae

    _imported(args.threads)
    p = _json(args.params)
    real_evict, gen_evict = evictions(args.method)
    cfg = FinetuneConfig(**{k: v for k, v in p.items() if k != "distill_seed"},
                         real_evict=real_evict, gen_evict=gen_evict)
    meta, train = load_meta(args.data), load_split(args.data, "train")
    labels = torch.tensor(meta["labels"])[train.labels]
    dev = resolve(args.device)
    vae = load_vae(args.vae, dev, role="vae_encode", channels=meta["channels"])
    dit = load_dit(args.dit, dev, labels=meta["labels"], latent_channels=vae.config.latent_channels)
    params = {"dataset": meta["name"], "method": args.method, "distill_seed": args.distill_seed,
              "real_evict": real_evict, "gen_evict": gen_evict, **p}
    name = f"{meta['name']}/{args.method}/distill{args.distill_seed}"
    with start_run(_json(args.tracking), "finetune", name, params,
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


def cmd_sample(args) -> None:
    import torch

    from .data.datasets import load_meta
    from .io import save_tensors
    from .generator.sample import require_varied, sample_images, save_grid
    from .generator.weights import load_dit, load_vae

    _imported(args.threads)
    p = _json(args.params)
    meta = load_meta(args.data)
    dev = resolve(args.device)
    vae = load_vae(args.vae, dev, role="vae_decode", channels=meta["channels"])
    dit = load_dit(args.dit, dev, labels=meta["labels"], latent_channels=vae.config.latent_channels)
    ipc, ncls = args.max_ipc, len(meta["labels"])
    local = torch.arange(ncls).repeat_interleave(ipc)  # class-major, ordered within class: nested IPCs
    index = torch.arange(ipc).repeat(ncls)
    if len(args.seeds) != len(args.out):
        raise SystemExit(f"--seeds ({len(args.seeds)}) and --out ({len(args.out)}) must pair up")
    params = {"dataset": meta["name"], "method": args.method, "distill_seed": args.distill_seed,
              "seeds": args.seeds, "max_ipc": ipc, "generator": args.dit, **p}
    name = f"{meta['name']}/{args.method}/distill{args.distill_seed}"
    # every seed's set in one job: the models are loaded once (one job per seed paid ~5 s start-up each)
    with start_run(_json(args.tracking), "sample", name, params,
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


def cmd_diversity(args) -> None:
    import torch

    from .data.datasets import load_split, take_ipc
    from .evaluate.diversity import PRDC_K, coverage, knn_radius, prdc, within_class_similarity
    from .baselines.features import embed, load_feature_net
    from .method.finetune import latent_cache
    from .io import load_tensors
    from .generator.latents import encode_posterior
    from .generator.weights import load_vae

    _imported(args.threads)
    dev = resolve(args.device)
    train = load_split(args.data, "train")
    vae = load_vae(args.vae, dev, role="vae_encode")
    real = latent_cache(vae, train.images, args.cache, device=dev)["mean"]
    net, net_aug = load_feature_net(args.features)
    embed_ = lambda x: embed(net, x, net.config["resolution"], augment=net_aug, device=dev)  # noqa: E731
    real_feats = embed_(train.images)  # (N, D): the fixed embedding of every real training image
    real_radius = knn_radius(real_feats, PRDC_K)  # (N,): once for every set
    if len(args.distilled) != len(args.out):
        raise SystemExit(f"--distilled ({len(args.distilled)}) and --out ({len(args.out)}) must pair up")
    sets = [(path, *load_tensors(path)) for path in args.distilled]
    first = sets[0][2]
    params = {**{k: first[k] for k in ("dataset", "method", "distill_seed") if k in first},
              "seeds": [m.get("seed") for _, _, m in sets], "prdc_k": PRDC_K, "prdc_embedding": args.features}
    name = "/".join(str(params[k]) for k in ("dataset", "method", "distill_seed") if k in params)
    with start_run(_json(args.tracking), "diversity", name, params, tags={"dataset": params["dataset"],
                                                                          "method": params["method"]}) as run:
        for (path, tensors, meta), out_path in zip(sets, args.out):
            out = {**{k: meta[k] for k in ("dataset", "method", "distill_seed", "seed") if k in meta},
                   "distilled": path, "ipc": {}}
            for ipc in args.ipc:
                x, y = take_ipc(tensors["images"], tensors["labels"], ipc, source=path)
                z = encode_posterior(vae, x, device=dev)[0]
                m = {"similarity": within_class_similarity(z, y), "coverage": coverage(real, train.labels, z, y),
                     **{f"prdc_{k}": v for k, v in prdc(real_feats, embed_(x), PRDC_K, real_radius).items()}}
                run.log_metrics({f"{k}_seed{meta.get('seed')}": v for k, v in m.items()}, step=ipc)
                out["ipc"][str(ipc)] = m
            write_json(out_path, {**out, "run_id": run.run_id})
            keep(out_path, run.run_id)


def cmd_figure1(args) -> None:
    import torch

    from .data.datasets import load_meta, load_split, take_ipc
    from .report.figures import figure1
    from .method.finetune import latent_cache
    from .io import load_tensors, write_json
    from .generator.latents import encode_posterior
    from .generator.weights import load_vae

    _imported(args.threads)
    dev = resolve(args.device)
    meta, train = load_meta(args.data), load_split(args.data, "train")
    vae = load_vae(args.vae, dev, role="vae_encode")
    real = latent_cache(vae, train.images, args.cache, device=dev)["mean"]
    sets = {}
    for item in args.distilled:  # METHOD=PATH
        method, path = item.split("=", 1)
        tensors, _ = load_tensors(path)
        x, y = take_ipc(tensors["images"], tensors["labels"], args.ipc, source=path)
        sets[method] = (encode_posterior(vae, x, device=dev)[0], y)
    title = (f"{meta['name']}: distilled latents (IPC {args.ipc}, coloured) against the real training "
             "latents (grey), PCA of the real latents")
    stats = figure1(real, train.labels, sets, meta["class_names"], title, args.png, args.pdf)
    write_json(args.stats, {"dataset": meta["name"], "ipc": args.ipc, "sets": dict(s.split("=", 1) for s in args.distilled),
                            "stats": stats})


def cmd_render(args) -> None:
    from .report.tables import render_all

    _imported()
    grids = dict(g.split("=", 1) for g in args.grids)
    if args.tracking is None:  # the workflow always passes it; a bare render may leave MLflow alone
        print("render: no --tracking (or $DIVDISTILL_TRACKING): MLflow parent runs skipped", file=sys.stderr)
    render_all(_json(args.spec), args.results, args.tables, args.metrics, args.plots, args.diversity, grids,
               tracking=None if args.tracking is None else _json(args.tracking), out_sweeps=args.sweep_plots)


def cmd_study(args) -> None:
    from .report.study import render

    _imported()
    render(_json(args.spec), args.results, args.diversity, args.out)


def cmd_check(args) -> None:
    cfg = config_mod.load(args.config)
    config_mod.check(cfg)
    problems = config_mod.missing_inputs(cfg)
    if problems:
        raise SystemExit(f"{args.config}: missing inputs:\n  " + "\n  ".join(problems))
    print(f"{args.config}: {len(config_mod.cells(cfg))} evaluation jobs; every input found")


def cmd_init_tracking(args) -> None:
    from .tracking.runs import init_tracking

    cfg = config_mod.load(args.config)
    for name, eid in init_tracking(cfg["mlflow"]).items():
        print(f"{eid}\t{name}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="divdistill", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def add(name, fn, *specs):
        p = sub.add_parser(name)
        for flags, kw in specs:
            p.add_argument(*flags, **kw)
        p.set_defaults(fn=fn)

    req = {"required": True}
    tracking = (["--tracking"], {"default": os.environ.get("DIVDISTILL_TRACKING"),
                                 "help": "JSON of params.yaml's mlflow section (default: $DIVDISTILL_TRACKING, "
                                         "which the Snakefile sets)"})
    threads = (["--threads"], {"type": int, "default": 1})
    add("prepare", cmd_prepare, (["--dataset"], req), (["--params"], req), (["--out"], req), threads, tracking)
    device = (["--device"], {"default": "auto", "help": "auto (CUDA when present), cpu, cuda, cuda:N"})
    add("features", cmd_features, (["--data"], req), (["--params"], req), (["--out"], req), threads, device,
        tracking)
    add("select", cmd_select, (["--method"], req), (["--data"], req), (["--seeds"], {"type": int, "nargs": "+", **req}),
        (["--max-ipc"], {"type": int, **req}), (["--features"], {"help": "feature extractor folder (kcenter, "
                                                                        "herding)"}),
        (["--out"], {"nargs": "+", **req, "help": "one file per seed"}), threads, device, tracking)
    add("dm", cmd_dm, (["--data"], req), (["--ipc"], {"type": int, **req}), (["--seed"], {"type": int, **req}),
        (["--params"], req), (["--out"], req), threads, device, tracking)
    add("evaluate", cmd_evaluate, (["--data"], req),
        (["--distilled"], {"nargs": "+", "help": "one distilled set per seed (none for full)"}),
        (["--cell"], {**req, "help": "JSON: dataset, method, ipc, model, distill_seed"}),
        (["--seeds"], {"type": int, "nargs": "+", **req}),
        (["--params"], req), (["--out"], {"nargs": "+", **req, "help": "one result file per seed"}),
        (["--checkpoints"], {"help": "resumable checkpoint folder (a seed<k> folder per seed)"}),
        (["--checkpoint-every"], {"type": int, "default": 0, "help": "epochs between checkpoints (0: none)"}),
        threads, device, tracking)
    add("pretrain-vae", cmd_pretrain_vae, (["--data"], req), (["--params"], req), (["--out"], req),
        (["--checkpoints"], req), threads, device, tracking)
    add("pretrain-dit", cmd_pretrain_dit, (["--data"], req), (["--vae"], req), (["--params"], req),
        (["--out"], req), (["--checkpoints"], req), threads, device, tracking)
    add("encode", cmd_encode, (["--data"], req), (["--vae"], req), (["--out"], req), threads, device)
    add("finetune", cmd_finetune, (["--data"], req), (["--vae"], req), (["--dit"], req), (["--method"], req),
        (["--distill-seed"], {"type": int, **req}), (["--params"], req), (["--cache"], req),
        (["--checkpoints"], req), (["--out"], req), threads, device, tracking)
    add("sample", cmd_sample, (["--data"], req), (["--vae"], req), (["--dit"], req), (["--method"], req),
        (["--distill-seed"], {"type": int, **req}), (["--seeds"], {"type": int, "nargs": "+", **req}),
        (["--max-ipc"], {"type": int, **req}), (["--params"], req), (["--out"], {"nargs": "+", **req}),
        (["--grid"], {**req, "help": "sample grid of the first seed"}),
        threads, device, tracking)
    add("diversity", cmd_diversity, (["--data"], req), (["--vae"], req), (["--cache"], req),
        (["--features"], {**req, "help": "the feature ConvNet folder (K-Center/Herding's): PRDC's embedding"}),
        (["--distilled"], {"nargs": "+", **req}), (["--ipc"], {"type": int, "nargs": "+", **req}),
        (["--out"], {"nargs": "+", **req}), threads, device, tracking)
    add("figure1", cmd_figure1, (["--data"], req), (["--vae"], req), (["--cache"], req),
        (["--distilled"], {"nargs": "+", **req, "help": "METHOD=PATH of each distilled set"}),
        (["--ipc"], {"type": int, **req}), (["--png"], req), (["--pdf"], req), (["--stats"], req), threads, device)
    add("render", cmd_render, (["--spec"], {**req, "help": "JSON with params.yaml's tables, ipc, seeds"}), (["--results"], {"nargs": "*", "default": []}),
        (["--diversity"], {"nargs": "*", "default": []}), (["--grids"], {"nargs": "*", "default": [],
                                                                            "help": "SRC=DST sample grids to copy"}),
        (["--tables"], req), (["--metrics"], req), (["--plots"], req),
        (["--sweep-plots"], {"default": "reports/plots/sweeps", "help": "Figure 4's points as CSVs (with sweeps)"}),
        tracking)
    add("study", cmd_study, (["--spec"], {**req, "help": "JSON with params.yaml's study, ipc, seeds, finetune, sample"}),
        (["--results"], {"nargs": "+", **req}), (["--diversity"], {"nargs": "*", "default": []}), (["--out"], req))
    add("check", cmd_check, (["--config"], {"default": "params.yaml"}))
    add("init-tracking", cmd_init_tracking, (["--config"], {"default": "params.yaml"}))
    return ap


def main(argv=None) -> None:
    # Snakemake stops jobs with SIGTERM: turn it into an exception so MLflow runs end FAILED.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    process = argv is None  # the console script (a process of its own), not a call from Python
    if process:
        gc.disable()  # until the command's imports are done (_imported): they only allocate, never leak cycles
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    finally:
        if process:
            gc.freeze()  # a quick exit: the final collection skips what the job built


if __name__ == "__main__":
    main()
