"""Selection baselines: distilled sets made of real training images.

A distilled set is one safetensors file holding, for every class, an *ordered*
list of ``max_ipc`` images; evaluation at IPC k takes each class's first k
(``data.take_ipc``), so one selection serves every IPC with nested sets.
K-Center and Herding are greedy, so their orders are nested by construction:
the first k picks are exactly what a run with budget k would choose.

    random   seeded random draw per class
    kcenter  farthest-first traversal of the class's features (Sener & Savarese 2018)
    herding  greedy running-mean matching of the class's features (Welling 2009)

The feature-based methods need ``features``: (N, D) rows aligned with the training
images, e.g. ``features.embed`` of a ConvNet trained on the full training set
(as in the DC benchmark, Cui et al. 2022).

    divdistill select --method random --data results/data/fashion-hard --seed 0 --max-ipc 50 --out ...
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from ..data.datasets import ImageSet


def _class_pools(labels: torch.Tensor, max_ipc: int):
    """(class, its training indices) for every class, in label order; checks the budget."""
    for c in labels.unique(sorted=True).tolist():
        pool = torch.nonzero(labels == c).flatten()
        if max_ipc > len(pool):
            raise ValueError(f"class {c} holds {len(pool)} training images, IPC {max_ipc} requested")
        yield c, pool


def random_order(labels: torch.Tensor, max_ipc: int, seed: int) -> torch.Tensor:
    """Per class, a seeded random draw of ``max_ipc`` training indices, class-major."""
    rng = np.random.default_rng(seed)
    parts = [rng.permutation(pool.numpy())[:max_ipc] for _, pool in _class_pools(labels, max_ipc)]
    return torch.from_numpy(np.concatenate(parts))


def kcenter_order(feats: torch.Tensor, k: int, start: int) -> torch.Tensor:
    """Farthest-first traversal of (n, D) points from ``start``: each next pick maximises its
    Euclidean distance to the nearest point already picked (ties: lowest index). -> (k,) local indices."""
    f = feats.double()  # float64: near-ties between float32 distances resolve the same way everywhere
    chosen = [start]
    mind = (f - f[start]).pow(2).sum(1)  # (n,) squared distance to the chosen set: same argmax
    mind[start] = -float("inf")  # never pick twice, even when duplicates make every distance 0
    for _ in range(k - 1):
        i = int(mind.argmax())  # first maximum: lowest index on ties
        chosen.append(i)
        mind = torch.minimum(mind, (f - f[i]).pow(2).sum(1))
        mind[chosen] = -float("inf")
    return torch.tensor(chosen[:k], dtype=torch.long)


def herding_order(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Herding on (n, D) points: step j (1-based) picks the unpicked x minimising
    ||mu - (sum of picked + x) / j|| with mu the mean of all n points (ties: lowest index).
    -> (k,) local indices."""
    f = feats.double()
    mu = f.mean(0)  # (D,)
    total = torch.zeros_like(mu)
    taken = torch.zeros(len(f), dtype=torch.bool)
    chosen = []
    for j in range(1, k + 1):
        gap = ((total + f) / j - mu).pow(2).sum(1)  # (n,) squared distance of each candidate mean to mu
        gap[taken] = float("inf")
        i = int(gap.argmin())  # first minimum: lowest index on ties
        chosen.append(i)
        taken[i] = True
        total += f[i]
    return torch.tensor(chosen, dtype=torch.long)


def kcenter(train: ImageSet, max_ipc: int, seed: int, features: torch.Tensor) -> torch.Tensor:
    """Per class, K-Center from a seeded random start, class-major. The start of class c is drawn
    by ``np.random.default_rng([seed, c])``, so it does not depend on the other classes."""
    parts = []
    for c, pool in _class_pools(train.labels, max_ipc):
        start = int(np.random.default_rng([seed, c]).integers(len(pool)))
        parts.append(pool[kcenter_order(features[pool], max_ipc, start)])
    return torch.cat(parts)


def herding(train: ImageSet, max_ipc: int, seed: int, features: torch.Tensor) -> torch.Tensor:
    """Per class, herding order, class-major. Deterministic: ``seed`` is unused (kept for the
    common selector signature), so every selection seed gives the same set."""
    return torch.cat([pool[herding_order(features[pool], max_ipc)]
                      for _, pool in _class_pools(train.labels, max_ipc)])


# name -> function(train ImageSet, max_ipc, seed, features (N, D) or None) -> selected indices, class-major;
# a selector whose ``features`` has no default needs them (the name table's ``features`` flag says the
# same to the DAG, which then trains the feature network first: tests/test_baselines.py holds them equal)
def random_selection(train: ImageSet, max_ipc: int, seed: int, features: torch.Tensor | None = None) -> torch.Tensor:
    """Per class, a seeded random order of its images, class-major (``random_order``)."""
    return random_order(train.labels, max_ipc, seed)


SELECTORS = {"random": random_selection, "kcenter": kcenter, "herding": herding}


def needs_features(method) -> bool:
    """Whether a selection rule (a name of ``SELECTORS`` or the function itself) needs features: its
    ``features`` parameter has no default."""
    fn = SELECTORS[method] if isinstance(method, str) else method
    return inspect.signature(fn).parameters["features"].default is inspect.Parameter.empty


def select(method, train: ImageSet, max_ipc: int, seed: int, features: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, labels, source indices) of the distilled set, class-major, ordered within class, by a
    selection rule: a name of ``SELECTORS`` or a function with their signature (the selection contract,
    experiment/methods.py). ``features``: (N, D) rows aligned with ``train.images``, required by the rules
    that need them (``needs_features``). A rule's indices are checked: class-major, ``max_ipc`` per class,
    each a training image of that class, none twice."""
    if isinstance(method, str) and method not in SELECTORS:
        raise KeyError(f"unknown selection method {method!r}; known: {', '.join(SELECTORS)}")
    name = method if isinstance(method, str) else getattr(method, "__name__", repr(method))
    if needs_features(method):
        if features is None:
            raise ValueError(f"selection method {name!r} needs features (features.embed of a trained "
                             "network), got none")
        if features.ndim != 2 or len(features) != len(train.labels):
            raise ValueError(f"features must be (N, D) with N = {len(train.labels)} training images, "
                             f"got {tuple(features.shape)}")
    idx = torch.as_tensor((SELECTORS[method] if isinstance(method, str) else method)(train, max_ipc, seed, features))
    classes = train.labels.unique(sorted=True)
    if (idx.ndim != 1 or len(set(idx.tolist())) != len(idx)
            or not torch.equal(train.labels[idx.long()], classes.repeat_interleave(max_ipc))):
        raise ValueError(f"selection {name!r} must return {max_ipc} distinct training indices per class, "
                         "class-major")
    idx = idx.long()
    return train.images[idx], train.labels[idx], idx
