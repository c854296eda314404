"""How diverse a distilled set is and how much of the real data it covers (beyond the paper).

Both are measured on flattened VAE latents (posterior means), per class:

- within-class similarity: mean cosine similarity over distinct pairs of one
  class's distilled latents, averaged over classes (lower = more diverse; the
  quantity the diversity loss, eq. 5, pushes down).
- coverage: the share of real training latents that have a distilled latent
  closer (Euclidean) than tau_c, the median over class c's real latents of
  their distance to their nearest *other* real latent. A set that only covers
  one mode of a class leaves the rest of the class uncovered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def within_class_similarity(latents: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Mean over classes of the mean pairwise cosine similarity (distinct pairs); None (undefined) if no
    class has 2 latents."""
    sims = []
    for c in labels.unique(sorted=True).tolist():
        u = F.normalize(latents[labels == c].flatten(1).double(), dim=1)  # (n, D)
        n = len(u)
        if n >= 2:
            g = u @ u.T
            sims.append(((g.sum() - g.diagonal().sum()) / (n * (n - 1))).item())
    return sum(sims) / len(sims) if sims else None


def coverage(real: torch.Tensor, real_labels: torch.Tensor, distilled: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of real latents with a same-class distilled latent within the class's tau_c."""
    covered, total = 0, 0
    for c in real_labels.unique(sorted=True).tolist():
        r = real[real_labels == c].flatten(1).double()  # (m, D)
        d = distilled[labels == c].flatten(1).double()  # (n, D)
        if len(r) < 2 or len(d) == 0:
            total += len(r)
            continue
        rr = torch.cdist(r, r)
        rr.fill_diagonal_(float("inf"))
        tau = rr.min(1).values.median()
        covered += int((torch.cdist(r, d).min(1).values < tau).sum())
        total += len(r)
    return covered / total
