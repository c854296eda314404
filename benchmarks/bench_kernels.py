"""Kernel-level levers on the demo's two largest costs, each against today's path in one run.

The demo's core-seconds go to the evaluation networks' training steps (ConvNet-3 width 24 at 32 px,
batches of 50 or 100 images: IPC 10 of 5 or 10 classes) and to the DiT's pretraining steps (width 128,
6 layers, 16 tokens, batch 128). Each row times one training step (forward, backward, optimiser) of the
same network on the same data, the variants interleaved round by round so background load hits them
alike; the median of the rounds is reported, and today's path is 1.00.

    evaluation   fp32 NCHW through oneDNN (today) | channels_last | bf16 autocast | oneDNN off (native
                 im2col convolutions) | the seeds of a cell as one grouped network (6 seeds' convolutions
                 as one conv with groups=6, per-seed linear heads as one batched matmul)
    pretraining  fp32 (today) | bf16 autocast | bf16 autocast with the attention product in fp32
                 (generator/attention.py); and the DiT step's achieved GFLOP/s (torch's FlopCounterMode)
                 beside a large fp32 matmul's (what the core can do)

    python benchmarks/bench_kernels.py [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from divdistill.evaluate.nets import build_net

SEEDS, WIDTH, SIDE = 6, 24, 32


def _sgd(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)


def eval_step(n: int, layout=None, bf16: bool = False, onednn: bool = True):
    """One seed's ConvNet-3 step on a batch of n; ``SEEDS`` of them make a cell's step."""
    nets, xs = [], []
    for s in range(SEEDS):
        torch.manual_seed(s)
        net, x = build_net("convnet", 10, 1, SIDE, WIDTH, 3), torch.randn(n, 1, SIDE, SIDE)
        if layout is not None:
            net, x = net.to(memory_format=layout), x.contiguous(memory_format=layout)
        nets.append(net)
        xs.append(x)
    y, opts = torch.randint(0, 10, (n,)), [_sgd(m.parameters()) for m in nets]

    def step():
        with torch.backends.mkldnn.flags(enabled=onednn):
            for net, x, opt in zip(nets, xs, opts):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return step


class Grouped(nn.Module):
    """``SEEDS`` ConvNet-3s as one network: channels seed-major, convolutions with groups=SEEDS."""

    def __init__(self):
        super().__init__()
        c, layers = SEEDS * WIDTH, []
        for i in range(3):
            layers += [nn.Conv2d(SEEDS if i == 0 else c, c, 3, 1, 1, groups=SEEDS), nn.GroupNorm(c, c), nn.ReLU(),
                       nn.AvgPool2d(2)]
        self.features = nn.Sequential(*layers)
        side = SIDE // 8
        self.w = nn.Parameter(torch.randn(SEEDS, WIDTH * side * side, 10) * 0.01)
        self.b = nn.Parameter(torch.zeros(SEEDS, 1, 10))

    def forward(self, x):  # x (N, SEEDS, H, W): one channel per seed
        h = self.features(x)  # (N, SEEDS * WIDTH, s, s)
        h = h.view(len(x), SEEDS, -1).transpose(0, 1)  # (SEEDS, N, WIDTH * s * s)
        return torch.baddbmm(self.b, h, self.w)  # (SEEDS, N, 10)


def grouped_step(n: int):
    torch.manual_seed(0)
    net, x, y = Grouped(), torch.randn(n, SEEDS, SIDE, SIDE), torch.randint(0, 10, (n,))
    opt = _sgd(net.parameters())

    def step():
        out = net(x)
        loss = sum(F.cross_entropy(out[s], y) for s in range(SEEDS))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def dit_step(bf16: bool = False, fp32_attention: bool = False):
    from divdistill.generator.attention import use_fp32_attention
    from divdistill.generator.objective import diffusion_loss
    from divdistill.generator.pretrain import DiTConfig, build_dit
    from divdistill.generator.sample import make_scheduler

    model = build_dit(DiTConfig(num_layers=6, num_attention_heads=4, attention_head_dim=32), 4, 8, 10, 0).train()
    if fp32_attention:
        use_fp32_attention(model)
    sched, g = make_scheduler(), torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        z0 = torch.randn(128, 4, 8, 8, generator=g)
        t, noise = torch.randint(0, 1000, (128,), generator=g), torch.randn(z0.shape, generator=g)
        z_t = sched.add_noise(z0, noise, t)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(z_t, timestep=t, class_labels=torch.randint(0, 11, (128,), generator=g)).sample
        loss, _ = diffusion_loss(out.float(), z0, z_t, t, noise, sched)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def timed(variants: dict, rounds: int, reps: int) -> dict[str, float]:
    """Median seconds per step of each variant, interleaved round by round after a warm-up."""
    for f in variants.values():
        f()
        f()
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k, f in variants.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            times[k].append((time.perf_counter() - t0) / reps)
    return {k: statistics.median(v) for k, v in times.items()}


def report(title: str, med: dict[str, float], unit: str) -> None:
    base = next(iter(med.values()))
    print(f"\n{title}\n| variant | {unit} | speed vs today |\n|---|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {1000 * v:.1f} | {base / v:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.rounds} interleaved rounds")
    for n in (50, 100):
        med = timed({"fp32 NCHW, oneDNN (today)": eval_step(n), "channels_last": eval_step(n, torch.channels_last),
                     "bf16 autocast": eval_step(n, bf16=True), "oneDNN off": eval_step(n, onednn=False),
                     "6 seeds as one grouped network": grouped_step(n)}, args.rounds, 3)
        report(f"Evaluation: a cell's step, {SEEDS} seeds x ConvNet-3 width {WIDTH}, batch {n}", med, "ms per step")
    med = timed({"fp32 (today)": dit_step(), "bf16 autocast": dit_step(bf16=True),
                 "bf16 autocast, attention product in fp32 (pretrain.dit.precision: bf16)":
                 dit_step(bf16=True, fp32_attention=True)}, args.rounds, 2)
    report("DiT pretraining step (width 128, 6 layers, batch 128 of 4x8x8 latents)", med, "ms per step")
    step = dit_step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    peak = 2 * 1024 ** 3 / timed({"matmul": lambda: a @ b}, args.rounds, 5)["matmul"]
    print(f"\nDiT step: {flops / 1e9:.1f} GFLOP counted; {flops / med['fp32 (today)'] / 1e9:.0f} GFLOP/s at today's "
          f"speed, against {peak / 1e9:.0f} GFLOP/s for a 1024^3 fp32 matmul on the same threads")


if __name__ == "__main__":
    main()
