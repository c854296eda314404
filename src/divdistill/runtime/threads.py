"""Idle cores for the critical path: a CPU job's torch threads grow onto cores nobody else is using.

    cores = IdleCores.for_job(threads, same_bits)   # None unless a local Snakemake run lends it cores
    for step in range(steps):
        cores.poll()                       # every `every` seconds: look at the machine, maybe resize
        ...

Snakemake gives a local job the threads its rule asks for. The demo's pretraining asks for one: a
2-thread job waits for two free cores at once, and with ~60 one-core jobs ready that took minutes
(params.yaml). So the DiT's pretraining, the demo's critical path, ran on one core while the other
had nothing left to do for its last ~140 s (benchmarks/README.md). Here the job watches the cores it
may run on: over each window, the CPU time they spent busy less the job's own is the rest of the
machine's load; the cores it leaves idle, up to the run's ``--cores`` (the Snakefile passes them in
``$DIVDISTILL_CORES``), become torch threads, and they go back as soon as another job starts.

Results do not change. A thread count is taken only where ``same_bits(n)`` holds: the training loop's
probe computes one loss and its gradients on the same batch at the job's own count and at ``n``, and
compares them bit for bit. On the demo's CPUs the DiT's step passes (its 1,200 steps give the same
weights); the VAE's does not (after 30 steps at 2 threads every one of its weights differs,
measured), so the VAE keeps its one thread. Without ``$DIVDISTILL_CORES`` (a job run by hand, a
Slurm job, whose allocation is its threads) nothing grows.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import psutil

ENV = "DIVDISTILL_CORES"  # the local run's --cores, set by the Snakefile's onstart (which never imports torch)


def busy_seconds(cpus: list[int]) -> float:
    """CPU seconds the given cores have spent busy since boot, every process's (Linux: /proc/stat)."""
    times = psutil.cpu_times(percpu=True)
    return sum(t.user + t.nice + t.system + t.irq + t.softirq + t.steal for i, t in enumerate(times) if i in cpus)


class IdleCores:
    """torch's thread count for one job: ``base`` (the job's own), up to ``most`` while that many
    cores would otherwise idle, never a count ``same_bits`` rejects (asked once per count)."""

    def __init__(self, base: int, most: int, same_bits: Callable[[int], bool], *, every: float = 2.0,
                 margin: float = 0.25, cpus: list[int] | None = None, busy: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic, own: Callable[[], float] = time.process_time,
                 set_threads: Callable[[int], None] | None = None):
        if not 1 <= base <= most:
            raise ValueError(f"need 1 <= base <= most threads, got base={base}, most={most}")
        cpus = sorted(os.sched_getaffinity(0)) if cpus is None else cpus  # the cores it may run on
        self.cores = len(cpus)
        self.base, self.most, self.threads = base, min(most, self.cores), base
        self.same_bits, self.every, self.margin = same_bits, every, margin
        self._busy = busy if busy is not None else (lambda: busy_seconds(cpus))
        if set_threads is None:
            import torch

            set_threads = torch.set_num_threads
        self._clock, self._own, self._set = clock, own, set_threads
        self.checked = {base: True}  # thread count -> same bits as at base
        self._last = self._sample()

    @classmethod
    def for_job(cls, base: int, same_bits: Callable[[int], bool], **kwargs) -> IdleCores | None:
        """For a job running ``base`` threads, from ``$DIVDISTILL_CORES``; None when it lends nothing."""
        lent = os.environ.get(ENV, "")
        if not lent.isdigit() or int(lent) <= base:
            return None
        cores = cls(base, int(lent), same_bits, **kwargs)
        return cores if cores.most > base else None  # most: at most the cores this process may use

    def _sample(self) -> tuple[float, float, float]:
        return self._clock(), self._busy(), self._own()

    def poll(self) -> int:
        """Resize when a window has passed; the thread count in use."""
        if self._clock() - self._last[0] < self.every:
            return self.threads
        (t0, busy0, own0), (t, busy, own) = self._last, self._sample()
        self._last = (t, busy, own)
        others = max(0.0, (busy - busy0) - (own - own0)) / max(t - t0, 1e-9)  # cores the others kept busy
        want = max(self.base, min(self.most, int(self.cores - others + self.margin)))
        if want > self.threads and not self._allowed(want):
            want = self.threads
        if want != self.threads:
            print(f"threads: {self.threads} -> {want} ({self.cores - others:.2f} of {self.cores} cores idle "
                  f"or ours)", file=sys.stderr)
            self._set(want)
            self.threads = want
        return self.threads

    def _allowed(self, n: int) -> bool:
        if n not in self.checked:
            self.checked[n] = bool(self.same_bits(n))
            verdict = "same bits: used when idle" if self.checked[n] else "other bits: never used"
            print(f"threads: {n} threads give {verdict}", file=sys.stderr)
        return self.checked[n]


def same_bits(model: "torch.nn.Module", loss_fn: Callable[[], tuple], gen: "torch.Generator",  # noqa: F821
               base: int, threads: int) -> bool:
    """One loss and its gradients at ``base`` threads and at ``threads``, from the same generator
    state: equal bit for bit? The run is left as it was (generator state, no gradients, the thread
    count in use); ``loss_fn``'s forward must keep no state (no batch statistics)."""
    import torch  # here: the Snakefile's onstart reads this module and never imports torch

    in_use, state, results = torch.get_num_threads(), gen.get_state(), []
    for n in (base, threads):
        torch.set_num_threads(n)
        gen.set_state(state)
        model.zero_grad(set_to_none=True)
        loss, _ = loss_fn()
        loss.backward()
        results.append([loss.detach(), *(p.grad for p in model.parameters() if p.grad is not None)])
    torch.set_num_threads(in_use)
    gen.set_state(state)
    model.zero_grad(set_to_none=True)
    return len(results[0]) == len(results[1]) and all(torch.equal(a, b) for a, b in zip(*results))
