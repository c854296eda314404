"""Selection baselines: distilled sets made of real training images.

A distilled set is one safetensors file holding, for every class, an *ordered*
list of ``max_ipc`` images; evaluation at IPC k takes each class's first k
(``data.take_ipc``), so one selection serves every IPC with nested sets.

    divdistill select --method random --data results/data/fashion-hard --seed 0 --max-ipc 50 --out ...
"""

from __future__ import annotations

import numpy as np
import torch

from .data import ImageSet


def random_order(labels: torch.Tensor, max_ipc: int, seed: int) -> torch.Tensor:
    """Per class, a seeded random draw of ``max_ipc`` training indices, class-major."""
    rng = np.random.default_rng(seed)
    parts = []
    for c in labels.unique(sorted=True).tolist():
        pool = torch.nonzero(labels == c).flatten().numpy()
        if max_ipc > len(pool):
            raise ValueError(f"class {c} holds {len(pool)} training images, IPC {max_ipc} requested")
        parts.append(rng.permutation(pool)[:max_ipc])
    return torch.from_numpy(np.concatenate(parts))


# name -> function(train ImageSet, max_ipc, seed) -> selected indices
SELECTORS = {
    "random": lambda train, max_ipc, seed: random_order(train.labels, max_ipc, seed),
}


def select(method: str, train: ImageSet, max_ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, labels, source indices) of the distilled set, class-major, ordered within class."""
    if method not in SELECTORS:
        raise KeyError(f"unknown selection method {method!r}; known: {', '.join(SELECTORS)}")
    idx = SELECTORS[method](train, max_ipc, seed)
    return train.images[idx], train.labels[idx], idx
