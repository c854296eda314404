"""divdistill synthesize: a synthesis method's set for one (IPC, seed), by its function (the synthesis
contract, experiment/methods.py: DM's is baselines/dm.py ``synthesize``)."""

from __future__ import annotations

from pathlib import Path

from .common import DEVICE, REQ, THREADS, TRACKING, imported, json_arg, log_every, tracking

ARGS = ((["--method"], REQ), (["--function"], {**REQ, "help": "module:function of the synthesis contract"}),
        (["--data"], REQ), (["--ipc"], {"type": int, **REQ}), (["--seed"], {"type": int, **REQ}),
        (["--params"], {**REQ, "help": "JSON: params.yaml's synthesis.<method> and the protocol's augment"}),
        (["--out"], REQ), THREADS, DEVICE, TRACKING)


def run(args) -> None:
    from ..data.datasets import load_split
    from ..generator.sample import require_varied
    from ..experiment.methods import resolve
    from ..io import keep, save_tensors
    from ..runtime.device import resolve as resolve_device
    from ..tracking.runs import start_run

    imported(args.threads)
    p = json_arg(args.params)
    fn = resolve(args.function)
    train = load_split(args.data, "train")
    params = {"dataset": Path(args.data).name, "method": args.method, "ipc": args.ipc, "distill_seed": 0,
              "seed": args.seed, **p}
    name = f"{params['dataset']}/{args.method}/ipc{args.ipc}/seed{args.seed}"
    with start_run(tracking(args), "synthesize", name, params) as run:
        log = log_every(run, max(1, int(p.get("iterations", 100)) // 100))
        images, labels, meta = fn(train, args.ipc, args.seed, p, device=resolve_device(args.device), log=log)
        run.log_metrics({k: v for k, v in meta.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if len(labels) != args.ipc * train.num_classes:
            raise ValueError(f"{args.method}: {len(labels)} images, {args.ipc} per class of "
                             f"{train.num_classes} classes expected")
        require_varied(images, f"the {args.method} set ({args.out})")
        save_tensors(args.out, {"images": images, "labels": labels}, {**params, **meta, "run_id": run.run_id})
        keep(args.out, run.run_id)
