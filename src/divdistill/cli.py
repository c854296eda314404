"""One entry point for every job the workflow runs.

    divdistill prepare  --dataset fashion-hard --params '{...}' --out results/data/fashion-hard
    divdistill select   --method random --data results/data/fashion-hard --seed 0 --max-ipc 50 --out ...
    divdistill evaluate --data results/data/fashion-hard --distilled ... --cell '{...}' --out ...
    divdistill render   --spec '{...}' --results ... --tables reports/tables ...
    divdistill check    --config params.yaml

Rules pass resolved hyper-parameters as JSON so Snakemake's params trigger re-runs
exactly the jobs whose numbers changed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from . import config as config_mod


def _json(text: str | None) -> dict:
    if text is None:
        raise SystemExit("missing --tracking (or $DIVDISTILL_TRACKING): run the job through Snakemake")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"invalid JSON argument: {e}: {text[:200]}")


def cmd_prepare(args) -> None:
    from .data import prepare
    from .tracking import start_run

    p = _json(args.params)
    params = {"dataset": args.dataset, **p}
    with start_run(_json(args.tracking), "prepare", args.dataset, params) as run:
        meta = prepare(args.dataset, out=args.out, root=p["fashion_root"], train_per_class=p["train_per_class"],
                       test_per_class=p["test_per_class"], split_seed=p["split_seed"])
        run.log_metrics({"num_classes": len(meta["class_names"])})


def cmd_select(args) -> None:
    from .data import load_split
    from .io import save_tensors
    from .select import select
    from .tracking import start_run

    train = load_split(args.data, "train")
    params = {"dataset": Path(args.data).name, "method": args.method, "seed": args.seed, "max_ipc": args.max_ipc}
    with start_run(_json(args.tracking), "select", f"{params['dataset']}/{args.method}/seed{args.seed}", params) as run:
        images, labels, idx = select(args.method, train, args.max_ipc, args.seed)
        save_tensors(args.out, {"images": images, "labels": labels},
                     {**params, "source_index": idx.tolist(), "run_id": run.run_id})
        run.log_metrics({"num_images": len(labels)})


def cmd_evaluate(args) -> None:
    import torch

    from .augment import AugmentConfig
    from .data import load_meta, load_split, take_ipc
    from .io import load_tensors, write_json
    from .nets import build_net
    from .trainer import TrainConfig, seed_everything, train_and_test
    from .tracking import start_run

    torch.set_num_threads(args.threads)
    cell, hp = _json(args.cell), _json(args.params)
    meta = load_meta(args.data)
    train, test = load_split(args.data, "train"), load_split(args.data, "test")
    if cell["method"] == "full":
        x, y = train.images, train.labels
    else:
        tensors, _ = load_tensors(args.distilled)
        x, y = take_ipc(tensors["images"], tensors["labels"], int(cell["ipc"]), source=args.distilled)
    aug = AugmentConfig(**{**hp["augment"], "crop_scale": tuple(hp["augment"]["crop_scale"])})
    train_cfg = TrainConfig(**{k: v for k, v in hp.items() if k not in ("augment", "net")},
                            augment=aug)
    name = "/".join(str(cell[k]) for k in ("dataset", "method", "ipc", "model")) + f"/seed{cell['seed']}"
    t0 = time.perf_counter()
    with start_run(_json(args.tracking), "evaluate", name, {**cell, **hp, "num_train": len(y)},
                   tags={k: cell[k] for k in ("dataset", "method", "ipc", "model")}) as run:
        seed_everything(cell["seed"])
        net = build_net(cell["model"], num_classes=len(meta["class_names"]), channels=meta["channels"],
                        resolution=hp["resolution"], **hp["net"])
        res = train_and_test(net, x, y, test.images, test.labels, train_cfg, seed=cell["seed"],
                             on_epoch=lambda epoch, m: run.log_metrics(m, step=epoch), progress=True)
        final = {"test_acc": res["test_acc"], "best_test_acc_over_training": res["best_test_acc"],
                 "train_loss_final": res["train_loss"], "wall_s": time.perf_counter() - t0}
        run.log_metrics(final, step=train_cfg.epochs)
        write_json(args.out, {"cell": cell, "params": hp, "run_id": run.run_id, "num_train": len(y),
                              "test_acc": res["test_acc"], "best_test_acc": res["best_test_acc"],
                              "best_epoch": res["best_epoch"], "curve": res["curve"],
                              "wall_s": final["wall_s"]})


def cmd_render(args) -> None:
    from .tables import render_all

    render_all(_json(args.spec), args.results, args.tables, args.metrics, args.plots)


def cmd_check(args) -> None:
    cfg = config_mod.load(args.config)
    config_mod.check(cfg)
    print(f"{args.config}: {len(config_mod.cells(cfg))} evaluation jobs")


def cmd_init_tracking(args) -> None:
    from .tracking import init_tracking

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
    add("prepare", cmd_prepare, (["--dataset"], req), (["--params"], req), (["--out"], req), tracking)
    add("select", cmd_select, (["--method"], req), (["--data"], req), (["--seed"], {"type": int, **req}),
        (["--max-ipc"], {"type": int, **req}), (["--out"], req), tracking)
    add("evaluate", cmd_evaluate, (["--data"], req), (["--distilled"], {}), (["--cell"], req),
        (["--params"], req), (["--out"], req), (["--threads"], {"type": int, "default": 1}), tracking)
    add("render", cmd_render, (["--spec"], {**req, "help": "JSON with params.yaml's tables, ipc, seeds"}), (["--results"], {"nargs": "*", "default": []}),
        (["--tables"], req), (["--metrics"], req), (["--plots"], req))
    add("check", cmd_check, (["--config"], {"default": "params.yaml"}))
    add("init-tracking", cmd_init_tracking, (["--config"], {"default": "params.yaml"}))
    return ap


def main(argv=None) -> None:
    # Snakemake stops jobs with SIGTERM: turn it into an exception so MLflow runs end FAILED.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = build_parser().parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
