"""divdistill select: a selection method's sets by its function (the selection contract,
experiment/methods.py; the built-in rules in baselines/select.py), every seed in one job (the features
embedded once), one MLflow run per seed."""

from __future__ import annotations

from pathlib import Path

from .common import DEVICE, REQ, SEEDS, THREADS, TRACKING, imported, pair_up, tracking

ARGS = ((["--method"], REQ), (["--function"], {**REQ, "help": "module:function of the selection contract"}),
        (["--data"], REQ), SEEDS, (["--max-ipc"], {"type": int, **REQ}),
        (["--features"], {"help": "feature extractor folder (kcenter, herding)"}),
        (["--out"], {"nargs": "+", **REQ, "help": "one file per seed"}), THREADS, DEVICE, TRACKING)


def run(args) -> None:
    from ..baselines.select import select
    from ..data.datasets import load_split
    from ..experiment.methods import resolve as resolve_function
    from ..runtime.device import resolve
    from ..io import keep, save_tensors
    from ..tracking.runs import start_run

    imported(args.threads)
    pair_up({"--seeds": args.seeds, "--out": args.out})
    train, mlflow_cfg = load_split(args.data, "train"), tracking(args)
    features = None
    if args.features:
        from ..baselines.features import embed, load_feature_net

        net, aug = load_feature_net(args.features)
        features = embed(net, train.images, net.config["resolution"], augment=aug,
                         device=resolve(args.device))  # (N, D)
    for seed, out in zip(args.seeds, args.out):
        params = {"dataset": Path(args.data).name, "method": args.method, "distill_seed": 0, "seed": seed,
                  "max_ipc": args.max_ipc, "features": args.features}
        with start_run(mlflow_cfg, "select", f"{params['dataset']}/{args.method}/seed{seed}", params) as run:
            images, labels, idx = select(resolve_function(args.function), train, args.max_ipc, seed, features)
            save_tensors(out, {"images": images, "labels": labels},
                         {**params, "source_index": idx.tolist(), "run_id": run.run_id})
            keep(out, run.run_id)
            run.log_metrics({"num_images": len(labels)})
