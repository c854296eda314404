"""divdistill diversity: within-class similarity and coverage of distilled sets in VAE latents, and
k-NN precision/recall/density/coverage in the feature ConvNet's embedding (evaluate/diversity.py)."""

from __future__ import annotations

from .common import DEVICE, REQ, THREADS, TRACKING, imported, pair_up, tracking

ARGS = ((["--data"], REQ), (["--vae"], REQ), (["--cache"], REQ),
        (["--features"], {**REQ, "help": "the feature ConvNet folder (K-Center/Herding's): PRDC's embedding"}),
        (["--distilled"], {"nargs": "+", **REQ, "help": "each seed's set at the largest IPC; with --per-ipc, each "
                           "seed's set of every IPC (seed-major)"}),
        (["--ipc"], {"type": int, "nargs": "+", **REQ}),
        (["--per-ipc"], {"action": "store_true", "help": "one set per IPC (DM, k-means samplers), not nested prefixes"}),
        (["--out"], {"nargs": "+", **REQ}), THREADS, DEVICE, TRACKING)


def run(args) -> None:
    from ..baselines.features import embed, load_feature_net
    from ..data.datasets import load_split, take_ipc
    from ..runtime.device import resolve
    from ..experiment.grid import ipc_label
    from ..evaluate.diversity import (
        PRDC_K,
        coverage,
        knn_radius,
        prdc,
        within_class_similarity,
    )
    from ..generator.latents import encode_posterior, latent_cache
    from ..generator.weights import load_vae
    from ..io import keep, load_tensors, write_json
    from ..tracking.runs import start_run

    imported(args.threads)
    dev = resolve(args.device)
    train = load_split(args.data, "train")
    vae = load_vae(args.vae, dev, role="vae_encode")
    real = latent_cache(vae, train.images, args.cache, device=dev)["mean"]
    net, net_aug = load_feature_net(args.features)
    embed_ = lambda x: embed(net, x, net.config["resolution"], augment=net_aug, device=dev)  # noqa: E731
    real_feats = embed_(train.images)  # (N, D): the fixed embedding of every real training image
    real_radius = knn_radius(real_feats, PRDC_K)  # (N,): once for every set
    if args.per_ipc:  # seed-major: the sets of seed i are distilled[i * len(ipc):(i + 1) * len(ipc)]
        pair_up({"--distilled": args.distilled, "--out (x --ipc)": [o for o in args.out for _ in args.ipc]})
        groups = [args.distilled[i * len(args.ipc):(i + 1) * len(args.ipc)] for i in range(len(args.out))]
    else:
        pair_up({"--distilled": args.distilled, "--out": args.out})
        groups = [[path] * len(args.ipc) for path in args.distilled]
    loaded = {path: (path, *load_tensors(path)) for path in dict.fromkeys(args.distilled)}  # each file once
    sets = [[loaded[path] for path in group] for group in groups]  # [seed][ipc]
    first = sets[0][0][2]
    params = {**{k: first[k] for k in ("dataset", "method", "distill_seed") if k in first},
              "seeds": [group[0][2].get("seed") for group in sets], "prdc_k": PRDC_K, "prdc_embedding": args.features}
    name = "/".join(str(params[k]) for k in ("dataset", "method", "distill_seed") if k in params)
    with start_run(tracking(args), "diversity", name, params, tags={"dataset": params["dataset"],
                                                                              "method": params["method"]}) as run:
        for group, out_path in zip(sets, args.out):
            meta = group[0][2]
            out = {**{k: meta[k] for k in ("dataset", "method", "distill_seed", "seed") if k in meta},
                   "distilled": group[0][0] if not args.per_ipc else [path for path, _, _ in group], "ipc": {}}
            for ipc, (path, tensors, _) in zip(args.ipc, group):
                x, y = take_ipc(tensors["images"], tensors["labels"], ipc, source=path)
                z = encode_posterior(vae, x, device=dev)[0]
                m = {"similarity": within_class_similarity(z, y), "coverage": coverage(real, train.labels, z, y),
                     **{f"prdc_{k}": v for k, v in prdc(real_feats, embed_(x), PRDC_K, real_radius).items()}}
                run.log_metrics({f"{k}_seed{meta.get('seed')}": v for k, v in m.items()}, step=ipc)
                out["ipc"][ipc_label(ipc)] = m
            write_json(out_path, {**out, "run_id": run.run_id})
            keep(out_path, run.run_id)
