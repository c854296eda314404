"""divdistill features: the feature ConvNet of K-Center, Herding and PRDC (baselines/features.py)."""

from __future__ import annotations

from pathlib import Path

from .common import DEVICE, REQ, THREADS, TRACKING, imported, json_arg, tracking

ARGS = ((["--data"], REQ), (["--params"], REQ), (["--out"], REQ), THREADS, DEVICE, TRACKING)


def run(args) -> None:
    from ..baselines.features import save_feature_net, train_feature_net
    from ..data.augment import AugmentConfig
    from ..data.datasets import load_split
    from ..runtime.device import resolve
    from ..io import keep
    from ..tracking.runs import start_run

    imported(args.threads)
    p = json_arg(args.params)
    train = load_split(args.data, "train")
    params = {"dataset": Path(args.data).name, **p}
    with start_run(tracking(args), "features", params["dataset"], params) as run:
        net = train_feature_net(train, net=p["model"], width=p["width"], depth=p["depth"], epochs=p["epochs"],
                                batch_size=p["batch_size"], lr=p["lr"], seed=p["seed"],
                                augment=AugmentConfig(**p["augment"]), device=resolve(args.device),
                                on_epoch=lambda epoch, m: run.log_metrics(m, step=epoch), progress=True)
        save_feature_net(net, args.out)
        keep(args.out, run.run_id)
