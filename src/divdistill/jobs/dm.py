"""divdistill dm: Distribution Matching's synthetic set for one (IPC, seed) (baselines/dm.py)."""

from __future__ import annotations

from pathlib import Path

from .common import DEVICE, REQ, THREADS, TRACKING, imported, json_arg, log_every, tracking

ARGS = ((["--data"], REQ), (["--ipc"], {"type": int, **REQ}), (["--seed"], {"type": int, **REQ}),
        (["--params"], REQ), (["--out"], REQ), THREADS, DEVICE, TRACKING)


def run(args) -> None:
    import dataclasses

    from ..baselines.dm import DMConfig, DSAConfig, distill_dm
    from ..data.augment import AugmentConfig
    from ..data.datasets import load_split
    from ..runtime.device import resolve
    from ..generator.sample import require_varied
    from ..io import keep, save_tensors
    from ..tracking.runs import start_run

    imported(args.threads)
    p = json_arg(args.params)
    train = load_split(args.data, "train")
    cfg = DMConfig(ipc=args.ipc, iterations=p["iterations"], lr_img=p["lr_img"], momentum=p["momentum"],
                   batch_real=p["batch_real"], net=p["model"], width=p["width"], depth=p["depth"],
                   dsa=DSAConfig(), augment=AugmentConfig(**p["augment"]))
    params = {"dataset": Path(args.data).name, "method": "dm", "ipc": args.ipc, "distill_seed": 0,
              "seed": args.seed, **p, "dsa": dataclasses.asdict(cfg.dsa)}
    name = f"{params['dataset']}/dm/ipc{args.ipc}/seed{args.seed}"
    with start_run(tracking(args), "dm", name, params) as run:
        log = log_every(run, max(1, p["iterations"] // 100))
        res = distill_dm(train, cfg, args.seed, device=resolve(args.device),
                         on_step=lambda it, loss: log(it, {"loss_match": loss}), progress=True)
        run.log_metrics({"loss_match_first": res.losses[0], "loss_match_last": res.losses[-1]}
                        if res.losses else {})
        require_varied(res.images, f"the DM set ({args.out})")
        save_tensors(args.out, {"images": res.images, "labels": res.labels},
                     {**params, "init_index": res.init_index.tolist(), "run_id": run.run_id})
        keep(args.out, run.run_id)
