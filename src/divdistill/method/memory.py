"""Per-class latent memories with self-adaptive eviction (arXiv 2505.19469, eqs. 7-8).

Each class c keeps a real memory (clean VAE latents of real images) and a generative memory
(detached predicted clean latents z0_hat), each holding at most K latents. With cosine similarity
sigma(a, b) = a.b / (|a| |b|) on flattened latents, while |M| > K:

    (7) s_j = sum_{k in M} sigma(m_j, m_k)        similarity degree of element j (k = j included)
    (8) M  <- M \\ {m_argmax_j s_j}                "max": drop the most redundant element

and the s_j are recomputed after every pop. "min" pops argmin_j s_j, "fifo" (the Minimax
baseline) pops the oldest element, "random" pops a uniformly random one. New latents are appended
in batch order before eviction runs; an element's index is its position in insertion order among
the current elements, and ties (sums within TIE_TOL) go to the lowest index.

``ClassMemory`` keeps the bookkeeping incremental: an add computes only the new-vs-old and
new-vs-new similarities, and a pop subtracts the popped element's column from the sums, instead of
rebuilding the n x n matrix per pop as ``evict_bruteforce`` (the reference) does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

EPS = 1e-8  # as losses.cosine_matrix: a zero latent has similarity 0 with everything
# Sums closer than this count as tied. Mathematically equal sums (duplicate latents, symmetric
# configurations) pick up float64 rounding in a different order incrementally and by brute force;
# the tolerance makes both break such ties to the lowest index. Bookkeeping error is ~1e-14.
TIE_TOL = 1e-9

# ----------------------------------------------------------------------------- eviction rules

# An eviction rule picks the element to pop: rule(sums (n,) float64 eq. (7) degrees in insertion
# order, generator) -> index in 0..n-1. It is called once per pop; the sums are recomputed between
# pops. A rule of your own is one function in your own module, named in params.yaml
# (``evictions: {mine: "mypkg.rules:evict"}``, README "Extending").
EvictionRule = Callable[[torch.Tensor, "torch.Generator | None"], int]


def _lowest_tied(sums: torch.Tensor, tied: torch.Tensor) -> int:
    if not tied.any():  # nan sums compare false everywhere
        raise ValueError("similarity sums are not finite: nan/inf latents reached the memory")
    return int(tied.nonzero()[0])


def evict_fifo(sums: torch.Tensor, generator: torch.Generator | None) -> int:
    """The Minimax baseline: the oldest element."""
    return 0


def evict_max(sums: torch.Tensor, generator: torch.Generator | None) -> int:
    """Eq. (8), "Ours": the most redundant element (largest similarity degree)."""
    return _lowest_tied(sums, sums >= sums.max() - TIE_TOL)


def evict_min(sums: torch.Tensor, generator: torch.Generator | None) -> int:
    """Table 3's ablation: the least redundant element."""
    return _lowest_tied(sums, sums <= sums.min() + TIE_TOL)


def evict_random(sums: torch.Tensor, generator: torch.Generator | None) -> int:
    """A uniformly random element. Drawn on the generator's device (CPU by default), so the sequence
    of pops does not depend on where the latents live; generator=None uses torch's global RNG."""
    device = "cpu" if generator is None else generator.device
    return int(torch.randint(sums.shape[0], (1,), generator=generator, device=device))


EVICTIONS: dict[str, EvictionRule] = {"fifo": evict_fifo, "max": evict_max, "min": evict_min, "random": evict_random}
STRATEGIES = tuple(EVICTIONS)  # the built-in rules


def register_eviction(name: str, rule: EvictionRule) -> None:
    """Add an eviction rule under ``name`` (the same rule again is a no-op; another is refused)."""
    if not callable(rule):
        raise TypeError(f"eviction rule {name!r}: {rule!r} is not callable")
    if EVICTIONS.get(name, rule) is not rule:
        raise ValueError(f"eviction rule {name!r} is taken by {EVICTIONS[name].__module__}.{EVICTIONS[name].__name__}")
    EVICTIONS[name] = rule


def load_evictions(spec: dict[str, str]) -> None:
    """Import and register each ``{name: "module:function"}`` rule (params.yaml's ``evictions``)."""
    for name, target in spec.items():
        module, _, attr = target.partition(":")
        if not module or not attr:
            raise ValueError(f"{name}: {target!r} is not of the form 'module:function'")
        register_eviction(name, getattr(importlib.import_module(module), attr))


def _check_strategy(strategy: str) -> None:
    if strategy not in EVICTIONS:
        raise ValueError(f"unknown eviction strategy {strategy!r}; allowed: {', '.join(EVICTIONS)}")


def _unit_rows(latents: torch.Tensor) -> torch.Tensor:
    """(n, *latent_shape) -> (n, D) float64 rows of unit norm (zero rows stay zero)."""
    return F.normalize(latents.flatten(1).double(), dim=1, eps=EPS)


def _pick(strategy: str, sums: torch.Tensor, generator: torch.Generator | None) -> int:
    """Index (insertion order among current elements) of the element to pop; sums (n,) are s_j."""
    j = int(EVICTIONS[strategy](sums, generator))
    if not 0 <= j < sums.shape[0]:
        raise ValueError(f"eviction rule {strategy!r} returned index {j} for {sums.shape[0]} elements")
    return j


def evict_bruteforce(
    latents: torch.Tensor, capacity: int, strategy: str, generator: torch.Generator | None = None
) -> list[int]:
    """Reference eviction: indices (ascending) of the latents (n, *) kept, rebuilding the full
    similarity matrix for every pop."""
    _check_strategy(strategy)
    kept = list(range(latents.shape[0]))
    while len(kept) > capacity:
        u = _unit_rows(latents[kept])  # (n, D)
        kept.pop(_pick(strategy, (u @ u.T).sum(1), generator))  # eq. (7) sums: (n,)
    return kept


def _generator_state(generator: torch.Generator | None) -> torch.Tensor | None:
    return None if generator is None else generator.get_state()


def _check_config(state: dict, capacity: int, strategy: str) -> None:
    if (state["capacity"], state["strategy"]) != (capacity, strategy):
        raise ValueError(
            f"state is for capacity={state['capacity']}, strategy={state['strategy']!r}; "
            f"this memory has capacity={capacity}, strategy={strategy!r}"
        )


def _restore_generator(generator: torch.Generator | None, state: torch.Tensor | None) -> None:
    if state is None:
        return
    if generator is None:
        raise ValueError("the state holds a generator state but this memory was built without a generator")
    generator.set_state(state)


class ClassMemory:
    """The memory of one class: at most ``capacity`` latents, evicted by ``strategy``.

    The original latents (detached, on the device and in the dtype they arrive with) and their
    float64 unit rows (2 MiB at n = 64, D = 4096) live in slot buffers ``_latents``
    (n, *latent_shape) and ``_u`` (n, D): a popped element's slot is overwritten by a kept new
    one, so an update writes B rows instead of copying the whole memory. ``_slots`` (n,) maps insertion order to slots. The float64 similarity
    matrix ``_sim`` (n, n) is small and kept in insertion order; each entry is computed once, when
    the later of its two latents enters. ``generator`` drives "random" and is saved in
    ``state_dict``.
    """

    def __init__(self, capacity: int, strategy: str, generator: torch.Generator | None = None):
        _check_strategy(strategy)
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.strategy, self.generator = capacity, strategy, generator
        self._latents: torch.Tensor | None = None  # None before the first add
        self._u = self._slots = self._sim = None

    def __len__(self) -> int:
        return 0 if self._latents is None else self._latents.shape[0]

    def tensor(self) -> torch.Tensor | None:
        """A copy of the stored latents (n, *latent_shape) in insertion order; None before the
        first add."""
        return None if self._latents is None else self._latents[self._slots]

    def add(self, latents: torch.Tensor) -> None:
        """Append latents (B, *latent_shape) in batch order, then evict down to capacity."""
        x = latents.detach()
        if self._latents is None:  # the first add fixes device, dtype and latent shape
            self._set(x[:0], x.new_zeros(0, 0, dtype=torch.float64))
        x = x.to(self._latents.device)
        n, b = len(self), x.shape[0]
        u_new = _unit_rows(x)  # (B, D)
        cross = (self._u @ u_new.T)[self._slots]  # (n, B), insertion order: the only new-vs-old products
        inner = u_new @ u_new.T  # (B, B)
        sim = torch.cat([torch.cat([self._sim, cross], 1), torch.cat([cross.T, inner], 1)])  # (n+B, n+B)
        # Eq. (7) sums, O((n+B)^2) from the stored products: re-summed per update, so the rounding
        # of the pop-by-pop subtractions below never accumulates across updates.
        sums = sim.sum(1)  # (n+B,)
        kept = list(range(n + b))
        while len(kept) > self.capacity:
            j = kept.pop(_pick(self.strategy, sums[kept], self.generator))
            sums -= sim[:, j]  # j leaves: every sum loses its similarity to j (dead entries unused)
        idx = torch.tensor(kept, dtype=torch.long, device=sums.device)  # (K',) positions among n + B
        old, new = idx[idx < n], idx[idx >= n] - n
        popped = torch.ones(n, dtype=torch.bool, device=idx.device)
        popped[old] = False
        # Kept new elements fill the popped slots, then (only while the memory is filling up) new
        # slots at the end: K' = min(K, n + B) >= n, so there are never more popped slots than new.
        grow = new.numel() - (n - old.numel())
        dest = torch.cat([self._slots[popped], torch.arange(n, n + grow, device=idx.device)])  # (#new,)
        if grow:
            self._latents = torch.cat([self._latents, x[:grow]])  # placeholders, overwritten below
            self._u = torch.cat([self._u, u_new[:grow]])
        self._latents[dest] = x[new]
        self._u[dest] = u_new[new]
        self._slots = torch.cat([self._slots[old], dest])  # (K',)
        self._sim = sim[idx][:, idx]  # (K', K')

    def _set(self, latents: torch.Tensor, sim: torch.Tensor) -> None:
        """Latents (n, *) in insertion order, stored in slots 0..n-1, with their similarities (n, n)."""
        self._latents, self._sim = latents, sim
        self._u = _unit_rows(latents)  # (n, D)
        self._slots = torch.arange(latents.shape[0], device=latents.device)

    def mean_pairwise_similarity(self) -> float | None:
        """Mean sigma over distinct pairs; None (undefined, never logged) when fewer than 2 are stored."""
        n = len(self)
        if n < 2:
            return None
        return float((self._sim.sum() - self._sim.diagonal().sum()) / (n * (n - 1)))

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: latents in insertion order, their float64
        similarities (as computed, so no rounding changes on resume) and the generator state.
        The unit rows are recomputed from the latents on load."""
        return {
            "capacity": self.capacity,
            "strategy": self.strategy,
            "latents": self.tensor(),
            "sim": self._sim,
            "generator": _generator_state(self.generator),
        }

    def load_state_dict(self, state: dict) -> None:
        _check_config(state, self.capacity, self.strategy)
        self._latents = self._u = self._slots = self._sim = None
        if state["latents"] is not None:  # cloned: slots are overwritten in place by later adds
            self._set(state["latents"].clone(), state["sim"])
        _restore_generator(self.generator, state["generator"])


class Memory:
    """Per-class memories (class id -> ClassMemory), all sharing capacity, strategy and generator."""

    def __init__(self, capacity: int, strategy: str, generator: torch.Generator | None = None):
        ClassMemory(capacity, strategy)  # validates the arguments now, not at the first update
        self.capacity, self.strategy, self.generator = capacity, strategy, generator
        self._mems: dict[int, ClassMemory] = {}

    def update(self, latents: torch.Tensor, labels: torch.Tensor) -> None:
        """latents (B, *latent_shape), labels (B,) int: add each class's latents in batch order,
        classes in ascending order (which fixes the order of draws from a shared generator)."""
        for c in labels.unique(sorted=True).tolist():
            if c not in self._mems:
                self._mems[c] = ClassMemory(self.capacity, self.strategy, self.generator)
            self._mems[c].add(latents[labels == c])

    def get(self, c: int) -> torch.Tensor | None:
        """Latents (n, *latent_shape) of class c; None when the class has none."""
        m = self._mems.get(int(c))
        return None if m is None else m.tensor()

    def classes(self) -> list[int]:
        return sorted(self._mems)

    def mean_pairwise_similarity(self) -> float | None:
        """Mean over classes holding >= 2 latents of their mean pairwise similarity; None if none
        (a memory of size 1 has no pairs: undefined, not a number to log)."""
        vals = [m.mean_pairwise_similarity() for m in self._mems.values() if len(m) >= 2]
        return sum(vals) / len(vals) if vals else None

    def state_dict(self) -> dict:
        """Class states without their generator copies, plus the shared generator state once."""
        classes = {c: m.state_dict() | {"generator": None} for c, m in self._mems.items()}
        return {
            "capacity": self.capacity,
            "strategy": self.strategy,
            "classes": classes,
            "generator": _generator_state(self.generator),
        }

    def load_state_dict(self, state: dict) -> None:
        _check_config(state, self.capacity, self.strategy)
        self._mems = {}
        for c, st in state["classes"].items():
            self._mems[c] = ClassMemory(self.capacity, self.strategy, self.generator)
            self._mems[c].load_state_dict(st)
        _restore_generator(self.generator, state["generator"])
