"""Job cost vs IPC and image size: the two jobs that grow with them, timed on a few sizes and
projected to the demo's schedule (params.yaml).

- evaluate: ``train_and_test`` of a fresh ConvNet-3 width 24 (5 classes as the demo's datasets, 1 channel, batch 64,
  colour jitter 0.4, CutMix off) on IPC x 5 random uint8 images. ``--epochs`` epochs are timed
  (with a 10-image test set, so its pass is negligible); one pass over the demo's 1500 test images
  is timed apart. Projection: demo epochs x s/epoch + demo test passes (eval_every 50 and the
  last) x s/test pass.
- sample: ``sample_latents`` with a random-init demo DiT (4 x S x S latents, S = px / 4 for the
  demo's 4x VAE; the VAE decode is not included), guidance 4, batch 250, IPC x 5 images.
  ``--steps`` steps are timed and scaled to the demo's 50: every step is one forward pass over
  the doubled batch (checked once below against a real 50-step run).

Not included: process start, imports, data loading, MLflow logging of the real jobs.

    python benchmarks/bench_jobs.py [--threads 1] [--ipc 10 50] [--px 32 64] [--epochs 5] [--steps 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from divdistill.data.augment import AugmentConfig
from divdistill.evaluate.nets import build_net
from divdistill.evaluate.trainer import TrainConfig, evaluate, seed_everything, train_and_test
from divdistill.experiment.config import load
from divdistill.experiment.grid import epochs_for
from divdistill.generator.pretrain import DiTConfig, build_dit
from divdistill.generator.sample import sample_latents

DEMO = load(Path(__file__).resolve().parents[1] / "params.yaml")  # the schedule projected to
CLASSES = 5  # the demo's datasets (fashion-hard, fashion-easy) hold 5 Fashion-MNIST classes each
EVAL_EVERY, SAMPLE_STEPS = DEMO["evaluate"]["eval_every"], DEMO["sample"]["steps"]
TEST_IMAGES = DEMO["data"]["test_per_class"] * CLASSES


def demo_epochs(ipc: int) -> int:
    return epochs_for(DEMO, ipc)  # params.yaml evaluate.epochs: the first entry covering the IPC


def time_evaluate(ipc: int, px: int, epochs: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (ipc * CLASSES, 1, px, px), generator=g, dtype=torch.uint8)
    tx = torch.randint(0, 256, (TEST_IMAGES, 1, px, px), generator=g, dtype=torch.uint8)
    y, ty = torch.arange(len(x)) % CLASSES, torch.arange(TEST_IMAGES) % CLASSES
    aug = AugmentConfig(color_jitter=0.4, lighting=0.0, cutmix_beta=0.0)
    cfg = TrainConfig(epochs=epochs, resolution=px, batch_size=64, eval_every=0, augment=aug)
    seed_everything(0)
    net = build_net("convnet", CLASSES, 1, px, width=24, depth=3)
    train_and_test(net, x[:128], y[:128], tx[:256], ty[:256], TrainConfig(epochs=1, resolution=px, augment=aug),
                   0, progress=False)  # warm-up: oneDNN builds its kernels for a new shape on first use
    t0 = time.perf_counter()
    # eval_every 0 still tests after the last epoch: on 10 images, so the timing is the training alone
    train_and_test(net, x, y, tx[:10], ty[:10], cfg, 0, progress=False)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate(net, tx, ty, px, aug, "cpu")
    test = time.perf_counter() - t0
    per_epoch = total / epochs
    e = demo_epochs(ipc)
    tests = len(set(range(EVAL_EVERY, e + 1, EVAL_EVERY)) | {e})
    return {"measured": total, "projected": e * per_epoch + tests * test,
            "rate": f"{per_epoch:.3f} s/epoch, {len(x) / per_epoch:.0f} img/s; test pass {test:.2f} s",
            "what": f"{epochs} ep -> {e} ep + {tests} test"}


def sample_seconds(dit, n: int, steps: int, precision) -> float:
    labels = torch.arange(n) % CLASSES
    t0 = time.perf_counter()
    sample_latents(dit, labels, steps=steps, guidance=4.0, null_label=10, seed=0, index=torch.arange(n) // CLASSES,
                   batch_size=250, precision=precision, progress=False)
    return time.perf_counter() - t0


def time_sample(ipc: int, px: int, steps: int, precision) -> dict:
    dit = build_dit(DiTConfig(), channels=4, size=px // 4, num_classes=10).eval()
    sample_seconds(dit, 20, 2, precision)  # warm-up
    t = sample_seconds(dit, ipc * CLASSES, steps, precision)
    proj = t * SAMPLE_STEPS / steps
    return {"measured": t, "projected": proj, "rate": f"{ipc * CLASSES / proj:.1f} img/s at {SAMPLE_STEPS} steps",
            "what": f"{steps} steps -> {SAMPLE_STEPS}", "dit": dit}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ipc", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--px", type=int, nargs="+", default=[32, 64], help="image side; sampling uses px/4 latents")
    ap.add_argument("--epochs", type=int, default=5, help="evaluation epochs actually timed (5: IPC 10 is 0.2 s)")
    ap.add_argument("--steps", type=int, default=10, help="sampling steps actually timed (scaled to 50)")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"], help="sample.precision (the demo's: bf16)")
    ap.add_argument("--jobs", nargs="+", default=["evaluate", "sample"], choices=["evaluate", "sample"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prec = args.precision
    print(f"{args.threads} thread(s); sampling precision: {prec}")

    rows = []
    for job in args.jobs:
        for px in args.px:
            for ipc in args.ipc:
                r = (time_evaluate(ipc, px, args.epochs) if job == "evaluate"
                     else time_sample(ipc, px, args.steps, args.precision))
                rows.append({"job": job, "ipc": ipc, "px": px, **r})
                print(f"  {job} IPC {ipc} {px} px: {r['measured']:.2f} s measured", flush=True)

    check = None
    smp = [r for r in rows if r["job"] == "sample"]
    if smp and args.steps != SAMPLE_STEPS:  # is the step scaling honest? time the smallest row at 50 steps
        r = min(smp, key=lambda r: (r["px"], r["ipc"]))
        full = sample_seconds(r["dit"], r["ipc"] * CLASSES, SAMPLE_STEPS, args.precision)
        check = f"IPC {r['ipc']} {r['px']} px: {full:.2f} s at {SAMPLE_STEPS} steps vs {r['projected']:.2f} s projected"

    print("\n| job | IPC | image px | timed | measured s | projected s (demo) | growth | rate |")
    print("|---|---:|---:|---|---:|---:|---:|---|")
    base = {}
    for r in rows:
        b = base.setdefault(r["job"], r["projected"])  # first row of the job: smallest IPC and px as given
        print(f"| {r['job']} | {r['ipc']} | {r['px']} | {r['what']} | {r['measured']:.2f} | {r['projected']:.1f} "
              f"| {r['projected'] / b:.1f}x | {r['rate']} |")
    print("growth: projected seconds relative to the job's first row")
    if check:
        print(f"step-scaling check, {check}")

    # scaling summary: IPC factor at the smallest px, side-doubling factor at the smallest IPC
    lo_ipc, hi_ipc, lo_px, hi_px = min(args.ipc), max(args.ipc), min(args.px), max(args.px)
    for job in args.jobs:
        p = {(r["ipc"], r["px"]): r["projected"] for r in rows if r["job"] == job}
        work = (hi_ipc * demo_epochs(hi_ipc)) / (lo_ipc * demo_epochs(lo_ipc)) if job == "evaluate" else hi_ipc / lo_ipc
        unit = "IPC x epochs" if job == "evaluate" else "images"
        parts = []
        if hi_ipc > lo_ipc:
            parts.append(f"IPC {lo_ipc} -> {hi_ipc}: x{p[hi_ipc, lo_px] / p[lo_ipc, lo_px]:.1f} ({unit}: x{work:.1f})")
        if hi_px > lo_px:
            parts.append(f"{lo_px} -> {hi_px} px: x{p[lo_ipc, hi_px] / p[lo_ipc, lo_px]:.1f} "
                         f"(pixels: x{(hi_px / lo_px) ** 2:.0f})")
        print(f"{job}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
