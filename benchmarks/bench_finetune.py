"""Fine-tuning step rate: latents cached once (posterior mean/std of each image and of its flip) vs.
VAE-encoding every batch, as the reference code does.

Demo-sized models with random weights: DiT width 128 (4 heads x 32), 6 layers, patch 2 on 4x8x8
latents, 10 classes, learned variance; AutoencoderKL with blocks 32/64/64 (~1M parameters) on 1x32x32
images; a 5-class training subset (generator labels 0, 2, 3, 4, 6: the demo's fashion-hard). Both
paths run the same ``finetune`` loop (DiffFit, memories, EMA) for the same steps; only where z0 comes
from differs. Runs are interleaved so background load hits both alike; a run's rate
is 1 / the median time between step callbacks after a few warm-up steps (robust to load spikes).
One thread by default, timed by the process's CPU clock: on a shared 2-core machine wall-clock rates
swing by 50% with other jobs' load, CPU time much less (--clock wall for wall-clock time).

    python benchmarks/bench_finetune.py [--threads 1] [--clock cpu] [--batch 8 32] [--steps 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel

from divdistill.generator.latents import cache_latents, encode_posterior
from divdistill.method.finetune import FinetuneConfig, finetune

DIT = dict(sample_size=8, in_channels=4, out_channels=8, patch_size=2, num_layers=6, num_attention_heads=4,
           attention_head_dim=32, num_embeds_ada_norm=10)
VAE = dict(in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), latent_channels=4, sample_size=32,
           down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
SUBSET = (0, 2, 3, 4, 6)  # generator-space labels of the fine-tuned classes
WARMUP = 3


def encode_every_step(vae, images):
    """The naive z0 source: flip in pixel space and encode the batch, then sample the posterior."""
    def z0(idx, flip, g):
        x = images[idx]
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        mean, std = encode_posterior(vae, x)
        return mean + std * torch.randn(mean.shape, generator=g)
    return z0


def steps_per_second(state, source, labels, batch, steps, clock=time.perf_counter) -> float:
    stamps = []
    cfg = FinetuneConfig(batch_size=batch, max_steps=WARMUP + steps, ema_decay=0.999, memory_size=64)
    dit = DiTTransformer2DModel(**DIT)
    dit.load_state_dict(state)
    finetune(dit, source, labels, DIT["num_embeds_ada_norm"], DDPMScheduler(num_train_timesteps=1000), cfg, seed=0,
             on_step=lambda log: stamps.append(clock()), progress=False)
    return 1.0 / statistics.median(b - a for a, b in zip(stamps[WARMUP - 1:], stamps[WARMUP:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: torch's choice)")
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    p.add_argument("--steps", type=int, default=30, help="timed steps per run (after warm-up)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or wall-clock time")
    p.add_argument("--images", type=int, default=1000, help="training images (the step rate does not depend on it)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE).eval()
    dit = DiTTransformer2DModel(**DIT)
    for b in dit.transformer_blocks[1:]:  # identical per-block embedders, as a converted checkpoint
        b.norm1.emb.load_state_dict(dit.transformer_blocks[0].norm1.emb.state_dict())
    state = dit.state_dict()
    images = torch.randint(0, 256, (args.images, 1, 32, 32), dtype=torch.uint8)
    labels = torch.tensor(SUBSET)[torch.arange(args.images) % len(SUBSET)]

    t0 = time.perf_counter()
    cache = cache_latents(vae, images)
    t_cache = time.perf_counter() - t0
    naive = encode_every_step(vae, images)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    n_dit, n_vae = sum(v.numel() for v in state.values()), sum(q.numel() for q in vae.parameters())
    print(f"DiT {n_dit / 1e6:.2f}M params, VAE {n_vae / 1e6:.2f}M params, threads={torch.get_num_threads()}, "
          f"clock={args.clock}, steps={args.steps} (+{WARMUP} warm-up), repeats={args.repeats}")
    print(f"cache build (one-off): {args.images} images + flips in {t_cache:.1f} s")
    for batch in args.batch:
        fast, slow = [], []
        for _ in range(args.repeats):
            fast.append(steps_per_second(state, cache, labels, batch, args.steps, clock))
            slow.append(steps_per_second(state, naive, labels, batch, args.steps, clock))
        f, s = statistics.median(fast), statistics.median(slow)
        print(f"batch {batch:3d}: cached {f:6.2f} steps/s  encode-every-step {s:6.2f} steps/s  "
              f"ratio {f / s:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
