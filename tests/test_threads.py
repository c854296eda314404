"""Idle cores (threads.py): the thread count follows the machine's idle cores, never a count that
changes the bits, and the DiT's pretraining ends with the same weights whatever the counts were."""

import os
import time

import pytest
import torch

from divdistill.runtime import threads
from divdistill.generator import pretrain
from divdistill.generator.pretrain import DiTConfig, train_dit
from divdistill.runtime.threads import same_bits
from divdistill.runtime.threads import IdleCores


class Machine:
    """A fake clock and busy-time counter: ``others(c)`` makes the next window's other processes keep
    ``c`` cores busy (the job's own CPU time is 0 here)."""

    def __init__(self):
        self.t, self.busy = 0.0, 0.0

    def clock(self):
        return self.t

    def others(self, cores, seconds=2.0):
        self.t += seconds
        self.busy += cores * seconds


def idle_cores(machine, same_bits=lambda n: True, most=2, apply=lambda n: None, **kw):
    """On a fake 2-core machine; the counts it sets are recorded (and passed to ``apply``)."""
    set_to = []
    cores = IdleCores(1, most, same_bits, cpus=[0, 1], busy=lambda: machine.busy, clock=machine.clock,
                      own=lambda: 0.0, set_threads=lambda n: (set_to.append(n), apply(n)), **kw)
    return cores, set_to


def test_grows_onto_idle_cores_and_gives_them_back():
    m = Machine()
    cores, set_to = idle_cores(m)
    m.others(1.0)                  # the other core busy: int(2 - 1 + 0.25) = 1
    assert cores.poll() == 1
    m.others(0.05)                 # idle: int(2 - 0.05 + 0.25) = 2
    assert cores.poll() == 2
    m.t += 1.0                     # within the window: no new look
    assert cores.poll() == 2
    m.others(0.67)                 # another job started beside our two threads: int(1.58) = 1
    assert cores.poll() == 1
    m.others(0.3)                  # a light load is not a free core: int(1.95) = 1
    assert cores.poll() == 1
    assert set_to == [2, 1]        # torch's count set only on a change


def test_never_takes_a_count_that_changes_the_bits():
    asked = []
    m = Machine()
    cores, set_to = idle_cores(m, same_bits=lambda n: asked.append(n) or False)
    for _ in range(4):
        m.others(0.0)
        assert cores.poll() == 1
    assert asked == [2] and set_to == []  # asked once, never used


def test_at_most_the_lent_cores():
    m = Machine()
    cores, set_to = idle_cores(m, most=8)  # two cores on this (fake) machine
    m.others(0.0)
    assert cores.poll() == 2 and set_to == [2]


def test_lent_only_by_a_local_run(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    assert IdleCores.for_job(1, lambda n: True) is None  # a job run by hand, or a Slurm job
    monkeypatch.setenv(threads.ENV, "1")
    assert IdleCores.for_job(1, lambda n: True) is None  # --cores 1: nothing to lend
    monkeypatch.setenv(threads.ENV, "all")
    assert IdleCores.for_job(1, lambda n: True) is None
    with pytest.raises(ValueError, match="base=3, most=2"):
        IdleCores(3, 2, lambda n: True, cpus=[0, 1])


def test_busy_seconds_include_this_process():
    cpus = sorted(os.sched_getaffinity(0))
    busy0, own0 = threads.busy_seconds(cpus), time.process_time()
    while time.process_time() - own0 < 0.3:  # spin: 0.3 s of this process's CPU, however loaded the machine
        pass
    own = time.process_time() - own0
    assert threads.busy_seconds(cpus) - busy0 >= 0.8 * own  # /proc/stat's 10 ms ticks


def test_probe_compares_both_counts_and_leaves_the_run_as_it_was():
    """same_bits: the loss computed at both counts from one generator state; the state and the
    gradients are as before, so the next step draws what it would have drawn."""
    model = torch.nn.Linear(3, 1)
    gen = torch.Generator().manual_seed(0)

    def loss_fn(shift=lambda: 0.0):
        x = torch.randn(4, 3, generator=gen)
        return model(x).square().mean() + shift(), {}

    expected = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    base = torch.get_num_threads()
    assert same_bits(model, loss_fn, gen, base, base + 1)
    assert not same_bits(model, lambda: loss_fn(lambda: 1e-3 * torch.get_num_threads()), gen, base, base + 1)
    assert torch.get_num_threads() == base and all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.randn(4, 3, generator=gen), expected)


def test_dit_pretraining_gives_the_same_weights_whatever_the_thread_counts(monkeypatch):
    """The counts alternate 1, 2, 1, 2 from step to step (every window idle, then busy): the weights
    equal a one-thread run's bit for bit. Demo width (128): the sizes where torch splits work."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 4
    mean = torch.randn(64, 4, 8, 8, generator=g)
    cfg = DiTConfig(num_layers=2, num_attention_heads=4, attention_head_dim=32, batch_size=64, steps=8,
                    warmup_steps=2)
    run = lambda: train_dit(mean, torch.full_like(mean, 0.1), labels, 4, cfg, seed=0, progress=False)  # noqa: E731
    torch.set_num_threads(1)
    monkeypatch.delenv(threads.ENV, raising=False)
    alone = run().state_dict()

    m, made = Machine(), []  # the counts set by the run's IdleCores

    def alternating(base, same_bits):
        cores, set_to = idle_cores(m, same_bits, every=0.0, apply=torch.set_num_threads)
        made.append(set_to)
        real_poll = cores.poll

        def poll():  # each step one window, its load alternating: idle, busy, idle, ...
            m.others(0.0 if len(set_to) % 2 == 0 else 1.0)
            return real_poll()
        cores.poll = poll
        return cores

    monkeypatch.setattr(pretrain.IdleCores, "for_job", staticmethod(alternating))
    try:
        mixed = run().state_dict()
    finally:
        torch.set_num_threads(1)
    used = made[0]
    if not used:
        pytest.skip("on this CPU two threads give the DiT's step other bits: the probe keeps one thread")
    assert used[:4] == [2, 1, 2, 1]
    assert alone.keys() == mixed.keys() and all(torch.equal(alone[k], mixed[k]) for k in alone)
