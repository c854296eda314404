"""What the paper's full table shape would cost at demo scale, from measured per-job costs.

The shape: the demo's tables (params.yaml) at IPC 10/20/50, each with ConvNet, ResNetAP-10 and
ResNet-18 (the demo's widths), every protocol (hard, soft, hard-noaug, soft-noaug), 6 seeds.

1. The jobs: a Snakemake dry run of params.yaml with that shape overlaid (``--configfile``): jobs per rule.
2. The evaluation jobs' cost, measured here: one seed of the suite's trainer (evaluate/trainer.py, the
   demo's schedule: 60/50/30 epochs at IPC 10/20/50, test every 50 epochs and at the last) for each
   (net, IPC) under the hard protocol on data of the demo's shape (5 classes, 32 px, 1,500 test images),
   and each protocol's cost relative to hard, measured on ConvNet at IPC 10 (soft with a teacher); Full
   and the teachers from the demo's Full job, the other nets in proportion to their cost at IPC 50.
3. The other jobs' cost from a finished demo's benchmark records (``--demo``: its project folder), per
   job type, scaled where the shape changes a job's work: sampling by the largest IPC (one set of 50 a
   seed serves IPC 10 and 20), per-IPC samplers and synthesis by the mean IPC (one job per IPC).
4. Wall time on C cores: the larger of the work over C and the critical path (VAE and DiT pretraining,
   one fine-tuning, one sampling job, the longest evaluation job).

    python benchmarks/demo_shape.py --demo /path/to/a/finished/demo [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from cost import ROOT, snakemake_counts  # benchmarks/cost.py: the dry run's job counts

from divdistill.evaluate import protocols
from divdistill.experiment import config as dd
from divdistill.experiment import grid
from divdistill.io import read_tsv

IPCS, NETS = (10, 20, 50), ("convnet", "resnetap10", "resnet18")
PROTOCOLS = tuple(protocols.PROTOCOLS)  # every protocol
CLASSES, TEST_IMAGES = 5, 1500


def shape_config(cfg: dict) -> dict:
    """The shape, as a --configfile over params.yaml."""
    return {"ipc": list(IPCS), "evaluate": {"protocols": list(PROTOCOLS)},
            "tables": {name: {"models": list(NETS), "protocols": list(PROTOCOLS)} for name in cfg["tables"]}}


def planned_jobs(cfg: dict) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        configfile = Path(tmp) / "shape.yaml"
        configfile.write_text(yaml.safe_dump(shape_config(cfg)))
        jobs = snakemake_counts(configfile)
    if jobs is None:
        raise SystemExit("snakemake -n: could not run or parse it")
    return jobs


def eval_seconds(net: str, ipc: int, protocol: str, cfg: dict) -> float:
    """One seed's training and testing, as the evaluate job runs it."""
    from divdistill.data.augment import AugmentConfig
    from divdistill.evaluate.nets import build_net
    from divdistill.evaluate.trainer import TrainConfig, seed_everything, train_and_test

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (CLASSES * ipc, 1, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(CLASSES).repeat_interleave(ipc)
    tx = torch.randint(0, 256, (TEST_IMAGES, 1, 32, 32), generator=g, dtype=torch.uint8)
    ty = torch.randint(0, CLASSES, (TEST_IMAGES,), generator=g)
    hp = cfg["evaluate"]
    kw = protocols.resolve(hp, protocol, grid.epochs_for(cfg, ipc, protocol))  # the trainer's, as the rules pass them
    soft = kw.get("labels") == "soft"
    kw["augment"] = AugmentConfig(**kw["augment"])
    width = hp["nets"][net]
    teacher = build_net(net, CLASSES, 1, 32, **width) if soft else None
    seed_everything(0)
    model = build_net(net, CLASSES, 1, 32, **width)
    t0 = time.perf_counter()
    cfg = TrainConfig(**{k: v for k, v in kw.items() if k != "net"})
    train_and_test(model, x, y, tx, ty, cfg, seed=0, progress=False, teacher=teacher)
    return time.perf_counter() - t0


def demo_costs(demo: Path) -> dict[str, list[float]]:
    """Seconds of each finished job of the demo by rule, from its benchmark records
    (results/benchmarks/<kind>/...: a sampling folder with an ``ipc<k>`` level is ``sample_per_ipc``,
    an evaluation of Full ``evaluate_full``, pretrain/vae.tsv ``pretrain_vae``)."""
    out = defaultdict(list)
    for tsv in (demo / "results" / "benchmarks").rglob("*.tsv"):
        rows = read_tsv(tsv)
        parts = tsv.relative_to(demo / "results" / "benchmarks").parts
        kind = parts[0]
        if kind == "sample" and any(p.startswith("ipc") for p in parts):
            kind = "sample_per_ipc"
        elif kind == "evaluate" and parts[2] == "full":
            kind = "evaluate_full"
        elif kind == "pretrain":
            kind = f"pretrain_{tsv.stem}"
        if rows:
            out[kind].append(float(rows[-1]["s"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, required=True, help="a finished demo's project folder")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dd.load(ROOT / "params.yaml")
    hp = cfg["evaluate"]
    jobs = planned_jobs(cfg)
    print("jobs in the shape:", dict(sorted(jobs.items())))

    eval_seconds("convnet", 10, "soft", cfg)  # warm-up: the first training in a process pays torch's lazy imports
    per_seed = {(n, k): statistics.median(eval_seconds(n, k, "hard", cfg) for _ in range(2)) for n in NETS for k in IPCS}
    conv = {p: statistics.median(eval_seconds("convnet", 10, p, cfg) for _ in range(2)) for p in PROTOCOLS}
    factor = {p: conv[p] / conv["hard"] for p in PROTOCOLS}
    print("\none seed, hard (s):", {f"{n} ipc{k}": round(v, 2) for (n, k), v in per_seed.items()})
    print("protocol / hard on ConvNet IPC 10:", {p: round(f, 2) for p, f in factor.items()})

    seeds, seeds_full = len(cfg["seeds"]), hp["seeds_full"]
    # every evaluation job of the dry run (tables, sweeps) at the mean cost of a (net, IPC, protocol) cell
    per_cell = (sum(per_seed[n, k] * factor[p] * seeds for n in NETS for k in IPCS for p in PROTOCOLS)
                / (len(NETS) * len(IPCS) * len(PROTOCOLS)))
    # Full (hard, seeds_full seeds) and the teachers (one seed): the demo's ConvNet seed of Full, and the
    # other nets' in proportion to their measured cost at IPC 50 (the same images, more passes)
    done = demo_costs(args.demo)
    mean = {k: statistics.mean(v) for k, v in done.items()}
    full_seed = {n: mean["evaluate_full"] / seeds_full * per_seed[n, 50] / per_seed["convnet", 50] for n in NETS}
    # the work a job type does in the shape against the demo's (IPC 10): sampling draws the largest IPC's
    # set (IPC 10 and 20 take its first images); per-IPC sampling and synthesis one IPC per job
    scale = {"sample": max(IPCS) / 10, "sample_per_ipc": statistics.mean(IPCS) / 10,
             "synthesize": statistics.mean(IPCS) / 10}
    rows = {"evaluate": jobs["evaluate"] * per_cell,
            "evaluate_full": jobs["evaluate_full"] / len(NETS) * sum(full_seed.values()) * seeds_full,
            "teacher": jobs.get("teacher", 0) / len(NETS) * sum(full_seed.values())}
    rows |= {k: jobs.get(k, 0) * mean[k] * scale.get(k, 1.0) for k in mean if k not in rows}
    total = sum(rows.values())
    print("\n| job type | jobs | core-seconds |\n|---|---:|---:|")
    for k, v in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {jobs.get(k, 0)} | {v:,.0f} |")
    print(f"| **all** | | **{total:,.0f}** |")
    longest = max(max(per_seed.values()) * max(factor.values()) * seeds, max(full_seed.values()) * seeds_full)
    pretraining = mean["pretrain_vae"] + mean["pretrain_dit"]
    critical = pretraining + mean["finetune"] + mean["sample"] * scale["sample"] + longest
    print(f"\ncritical path ~{critical:,.0f} s (pretraining {pretraining:,.0f}, then one fine-tuning, one sampling "
          f"job at IPC 50 and the longest evaluation job, {longest:,.0f})")
    for cores in (2, 8):
        print(f"wall on {cores} cores: ~{max(total / cores, critical) / 60:.0f} min (work over cores, or the critical path)")


if __name__ == "__main__":
    main()
