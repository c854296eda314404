"""Sampling throughput: a batch of images denoised together vs. one image at a time (as the
public reference code samples).

Demo-sized DiT with random weights (width 128, 6 layers, patch 2 on 4x8x8 latents, 10 classes,
learned variance), 50 guided steps. Both paths call the same ``sample_latents``; only the batch size
differs, and the per-image noise makes the two results equal, which is checked.

    python benchmarks/bench_sample.py [--threads 1] [--images 100] [--steps 50]
"""

from __future__ import annotations

import argparse
import time

import torch

from divdistill.pretrain import DiTConfig, build_dit
from divdistill.sample import sample_latents


def images_per_s(dit, labels, index, batch_size: int, steps: int) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    z = sample_latents(dit, labels, steps=steps, guidance=4.0, null_label=10, seed=0, index=index,
                       batch_size=batch_size, progress=False)
    return len(labels) / (time.perf_counter() - t0), z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dit = build_dit(DiTConfig(), channels=4, size=8, num_classes=10).eval()
    labels = torch.arange(args.images) % 10
    index = torch.arange(args.images) // 10
    one = 10  # one-at-a-time is timed on a prefix: it is slow, and its rate does not depend on the count
    batched, zb = images_per_s(dit, labels, index, args.images, args.steps)
    single, zs = images_per_s(dit, labels[:one], index[:one], 1, args.steps)
    # equal up to float rounding: a batch's matmuls round differently from a single image's
    same = torch.allclose(zb[:one], zs, rtol=1e-4, atol=1e-4 * zs.abs().max().item())
    print(f"batched ({args.images} at once): {batched:8.1f} images/s")
    print(f"one at a time:            {single:8.1f} images/s")
    print(f"speed-up: {batched / single:.1f}x (target >= 10x); same images: {same}")


if __name__ == "__main__":
    main()
