"""Memory update time: incremental ClassMemory vs. brute force (full similarity matrix per pop).

A full memory (K latents of shape 4x32x32, d = 4096) receives batches of B latents repeatedly;
every update appends B and pops B. Both implementations see the same batches; their kept sets are
compared after every update in an untimed pass, then each is timed over the whole sequence.

    python benchmarks/bench_memory.py [--threads N] [--strategy max] [--updates 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from divdistill.method.memory import STRATEGIES, ClassMemory, evict_bruteforce

LATENT_SHAPE = (4, 32, 32)


class BruteForceMemory:
    """Same contract as ClassMemory.add / tensor, evicting with evict_bruteforce."""

    def __init__(self, capacity: int, strategy: str, generator: torch.Generator):
        self.capacity, self.strategy, self.generator = capacity, strategy, generator
        self.latents = torch.empty(0, *LATENT_SHAPE)

    def add(self, x: torch.Tensor) -> None:
        pool = torch.cat([self.latents, x])  # (n + B, *latent_shape)
        self.latents = pool[evict_bruteforce(pool, self.capacity, self.strategy, self.generator)]

    def tensor(self) -> torch.Tensor:
        return self.latents


def make_data(capacity: int, batch: int, updates: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-like latents: a shared mean plus noise, so similarity sums differ meaningfully."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(LATENT_SHAPE, generator=g)
    noise = torch.randn(capacity + updates * batch, *LATENT_SHAPE, generator=g)
    z = mean + 1.5 * noise
    return z[:capacity], z[capacity:].reshape(updates, batch, *LATENT_SHAPE)


def filled(cls, args, fill):
    mem = cls(args.capacity, args.strategy, torch.Generator().manual_seed(args.seed))
    mem.add(fill)  # fills to K exactly: no pops, no generator draws
    return mem


def time_updates(cls, args, fill, batches) -> float:
    """Seconds per update, over the whole batch sequence."""
    mem = filled(cls, args, fill)
    t0 = time.perf_counter()
    for x in batches:
        mem.add(x)
    return (time.perf_counter() - t0) / len(batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--strategy", default="max", choices=STRATEGIES)
    p.add_argument("--capacity", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--updates", type=int, default=40, help="batches inserted into the full memory")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fill, batches = make_data(args.capacity, args.batch, args.updates, args.seed)

    inc, ref = filled(ClassMemory, args, fill), filled(BruteForceMemory, args, fill)
    for i, x in enumerate(batches):
        inc.add(x)
        ref.add(x)
        if not torch.equal(inc.tensor(), ref.tensor()):
            raise SystemExit(f"kept sets differ after update {i}")

    t_inc, t_ref = [], []
    for _ in range(args.repeats):  # interleaved, so background load hits both alike
        t_inc.append(time_updates(ClassMemory, args, fill, batches))
        t_ref.append(time_updates(BruteForceMemory, args, fill, batches))
    med_inc, med_ref = statistics.median(t_inc), statistics.median(t_ref)
    print(
        f"K={args.capacity} d={fill[0].numel()} B={args.batch} strategy={args.strategy} "
        f"threads={torch.get_num_threads()} updates={args.updates} repeats={args.repeats}"
    )
    print(f"kept sets identical after all {args.updates} updates")
    print(f"incremental: {1e3 * med_inc:8.3f} ms/update (median; min {1e3 * min(t_inc):.3f})")
    print(f"brute force: {1e3 * med_ref:8.3f} ms/update (median; min {1e3 * min(t_ref):.3f})")
    print(f"speed-up:    {med_ref / med_inc:8.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
