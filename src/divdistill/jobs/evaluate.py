"""divdistill evaluate: train a test network from scratch on a distilled set and test it
(evaluate/trainer.py) under one protocol (evaluate/protocols.py). Every seed of ``--seeds`` in turn
(one process: the imports and the data load are paid once), each with its own MLflow run, checkpoints
under ``<checkpoints>/seed<k>`` and result file. The soft protocol's students read ``--teacher``; the
teacher itself is this job on the full training set with ``--save-net`` (rule ``teacher``)."""

from __future__ import annotations

import time
from pathlib import Path

from .common import DEVICE, REQ, SEEDS, THREADS, TRACKING, imported, json_arg, pair_up, tracking

ARGS = ((["--data"], REQ), (["--distilled"], {"nargs": "+", "help": "one distilled set per seed (none for full)"}),
        (["--cell"], {**REQ, "help": "JSON: dataset, method, ipc, model, protocol, distill_seed"}), SEEDS,
        (["--teacher"], {"help": "the soft protocol's teacher (a --save-net file of the same dataset and net)"}),
        (["--save-net"], {"nargs": "+", "help": "save each seed's trained network here (the teacher)"}),
        (["--params"], REQ), (["--out"], {"nargs": "+", **REQ, "help": "one result file per seed"}),
        (["--checkpoints"], {"help": "resumable checkpoint folder (a seed<k> folder per seed)"}),
        (["--checkpoint-every"], {"type": int, "default": 0, "help": "epochs between checkpoints (0: none)"}),
        THREADS, DEVICE, TRACKING)


def run(args) -> None:
    from ..data.augment import AugmentConfig
    from ..data.datasets import load_meta, load_split, take_ipc
    from ..runtime.device import resolve
    from ..evaluate.nets import build_net
    from ..evaluate.trainer import TrainConfig, seed_everything, train_and_test
    from ..experiment.grid import parse_ipc
    from ..io import keep, load_tensors, save_tensors, write_json
    from ..tracking.runs import start_run

    imported(args.threads)
    # the cell as the rule wrote it (its ipc as text, "10" or "all": so the result files and MLflow hold it)
    cell, hp = {"protocol": "hard", **json_arg(args.cell)}, json_arg(args.params)  # the rules pass the protocol
    full = cell["method"] == "full"
    pair_up({"--seeds": args.seeds, "--out": args.out, **({} if full else {"--distilled": args.distilled or []}),
             **({"--save-net": args.save_net} if args.save_net else {})})
    meta = load_meta(args.data)
    train, test = load_split(args.data, "train"), load_split(args.data, "test")
    train_cfg = TrainConfig(**{k: v for k, v in hp.items() if k not in ("augment", "net")},
                            augment=AugmentConfig(**hp["augment"]))
    mlflow_cfg = tracking(args)

    def make_net():  # the cell's test network (the teacher has the student's architecture)
        return build_net(cell["model"], num_classes=len(meta["class_names"]), channels=meta["channels"],
                         resolution=hp["resolution"], **hp["net"])

    teacher = None
    if args.teacher is not None:
        teacher = make_net()
        teacher.load_state_dict(load_tensors(args.teacher)[0])
    for i, (seed, out) in enumerate(zip(args.seeds, args.out)):
        cell_s = {**cell, "seed": seed}
        if full:
            x, y = train.images, train.labels
        else:
            tensors, _ = load_tensors(args.distilled[i])
            x, y = take_ipc(tensors["images"], tensors["labels"], parse_ipc(cell["ipc"]), source=args.distilled[i])
        name = "/".join(str(cell[k]) for k in ("dataset", "method", "ipc", "model", "protocol"))
        name = ("teacher/" if cell.get("role") == "teacher" else "") + f"{name}/distill{cell['distill_seed']}-seed{seed}"
        t0 = time.perf_counter()
        with start_run(mlflow_cfg, "evaluate", name, {**cell_s, **hp, "num_train": len(y)},
                       tags={k: cell[k] for k in ("dataset", "method", "ipc", "model", "protocol", "role") if k in cell}) as run:
            seed_everything(seed)
            net = make_net()
            res = train_and_test(net, x, y, test.images, test.labels, train_cfg, seed=seed,
                                 device=resolve(args.device),
                                 checkpoint_dir=None if args.checkpoints is None else Path(args.checkpoints) / f"seed{seed}",
                                 checkpoint_every=args.checkpoint_every,
                                 on_epoch=lambda epoch, m: run.log_metrics(m, step=epoch), progress=True,
                                 teacher=teacher)
            if args.save_net:
                save_tensors(args.save_net[i], net.state_dict(), {"cell": cell_s})
            final = {"test_acc": res["test_acc"], "best_test_acc_over_training": res["best_test_acc"],
                     "train_loss_final": res["train_loss"], "wall_s": time.perf_counter() - t0}
            run.log_metrics(final, step=train_cfg.epochs)
            write_json(out, {"cell": cell_s, "params": hp, "run_id": run.run_id, "num_train": len(y),
                             "test_acc": res["test_acc"], "best_test_acc": res["best_test_acc"],
                             "best_epoch": res["best_epoch"], "curve": res["curve"],
                             "train_loss_final": res["train_loss"], "wall_s": final["wall_s"]})
            keep(out, run.run_id)
