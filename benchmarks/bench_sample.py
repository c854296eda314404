"""Sampling throughput: a batch of images denoised together vs. one image at a time (as the
public reference code samples), each in fp32 and under bf16 autocast (``sample.precision``).

Demo-sized DiT with random weights (width 128, 6 layers, patch 2 on 4x8x8 latents, 10 classes,
learned variance), 50 guided steps. Every path calls the same ``sample_latents``; only the batch size
and the precision differ. The per-image noise makes batched and one-at-a-time fp32 results equal, which
is checked. The headline is the suite's path (batched, bf16) against the *faster* of the two
one-at-a-time paths, so the ratio does not profit from a slow naive precision.

    python benchmarks/bench_sample.py [--threads 1] [--images 250] [--steps 50]
"""

from __future__ import annotations

import argparse
import time

import torch

from divdistill.generator.pretrain import DiTConfig, build_dit
from divdistill.generator.sample import sample_latents


def images_per_s(dit, labels, index, batch_size: int, steps: int, precision: str) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    z = sample_latents(dit, labels, steps=steps, guidance=4.0, null_label=10, seed=0, index=index,
                       batch_size=batch_size, precision=precision, progress=False)
    return len(labels) / (time.perf_counter() - t0), z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=250, help="the batch: the demo samples 250 at a time")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dit = build_dit(DiTConfig(), channels=4, size=8, num_classes=10).eval()
    labels = torch.arange(args.images) % 10
    index = torch.arange(args.images) // 10
    one = 10  # one-at-a-time is timed on a prefix: it is slow, and its rate does not depend on the count
    rate, z = {}, {}
    for precision in ("fp32", "bf16"):
        rate["batched", precision], z["batched", precision] = images_per_s(
            dit, labels, index, args.images, args.steps, precision)
        rate["single", precision], z["single", precision] = images_per_s(
            dit, labels[:one], index[:one], 1, args.steps, precision)
    # equal up to float rounding: a batch's matmuls round differently from a single image's
    zs = z["single", "fp32"]
    same = torch.allclose(z["batched", "fp32"][:one], zs, rtol=1e-4, atol=1e-4 * zs.abs().max().item())
    print(f"{args.threads} thread(s), {args.steps} steps, guidance 4 (a doubled batch)")
    for (path, precision), r in rate.items():
        what = f"batched ({args.images} at once)" if path == "batched" else "one at a time"
        print(f"{what:24s} {precision}: {r:8.1f} images/s")
    naive = max(rate["single", "fp32"], rate["single", "bf16"])
    print(f"speed-up, batched bf16 (the suite) vs the faster one-at-a-time: {rate['batched', 'bf16'] / naive:.1f}x "
          f"(target >= 10x); batched fp32 vs one-at-a-time fp32: "
          f"{rate['batched', 'fp32'] / rate['single', 'fp32']:.1f}x; same fp32 images: {same}")


if __name__ == "__main__":
    main()
