"""divdistill prepare: one dataset's train/test split as safetensors (data/datasets.py)."""

from __future__ import annotations

from .common import REQ, THREADS, TRACKING, imported, json_arg, tracking

ARGS = ((["--dataset"], REQ), (["--params"], {**REQ, "help": "JSON: experiment/config.py prepare_args"}),
        (["--out"], REQ), THREADS, TRACKING)


def run(args) -> None:
    from ..data.datasets import prepare
    from ..data.registry import get_spec
    from ..tracking.runs import start_run

    imported()
    p = json_arg(args.params)
    if "folder" in p:  # params.yaml's own dataset: its declaration (data/folders.py)
        from ..data.folders import register

        register({args.dataset: p.pop("folder")})
    params = {"dataset": args.dataset, **p}
    params["class_names"] = ",".join(get_spec(args.dataset).class_names)  # in the class order of the labels
    if get_spec(args.dataset).source == "imagenet":
        p["workers"] = args.threads  # decoding threads
    with start_run(tracking(args), "prepare", args.dataset, params) as run:
        meta = prepare(args.dataset, out=args.out, **p)
        run.log_metrics({"num_classes": len(meta["class_names"])})
        if meta.get("test_split"):
            run.set_tag("test_split", meta["test_split"])
