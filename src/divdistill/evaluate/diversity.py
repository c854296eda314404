"""How diverse a distilled set is and how much of the real data it covers (beyond the paper).

Two measures on flattened VAE latents (posterior means), per class:

- within-class similarity: mean cosine similarity over distinct pairs of one
  class's distilled latents, averaged over classes (lower = more diverse; the
  quantity the diversity loss, eq. 5, pushes down).
- coverage: the share of real training latents that have a distilled latent
  closer (Euclidean) than tau_c, the median over class c's real latents of
  their distance to their nearest *other* real latent. A set that only covers
  one mode of a class leaves the rest of the class uncovered.

and the k-nearest-neighbour manifold measures of Naeem et al. (ICML 2020, "Reliable fidelity
and diversity metrics for generative models"), ``prdc``, in one fixed embedding: the
penultimate features of the ConvNet the K-Center and Herding baselines train on the real
training set (features.py). That network is fixed per dataset, trained on real images only and
shared by every method, so no method is measured in a space it was fitted to (the VAE latents
are the generator's own space).
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


PRDC_K = 5  # nearest neighbours: Naeem et al.'s recommended k (their Section 4)


def knn_radius(x: torch.Tensor, k: int = PRDC_K, chunk: int = 2048) -> torch.Tensor:
    """(N,) NND_k: distance of each row of x (N, ...) to its k-th nearest *other* row, float64 (rows in
    chunks, so the N x N distances are never held at once)."""
    x = x.flatten(1).double()
    if len(x) <= k:
        raise ValueError(f"k = {k} needs more than {k} points, got {len(x)}")
    out = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i:i + chunk], x)  # (n, N): includes each row's zero distance to itself
        out.append(d.kthvalue(k + 1, dim=1).values)  # k + 1: skip the point itself
    return torch.cat(out)


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = PRDC_K,
         real_radius: torch.Tensor | None = None) -> dict[str, float | None]:
    """Precision, recall, density and coverage of ``fake`` (M, ...) against ``real`` (N, ...).

    With B(x, r) the closed ball around x and NND_k(x) the distance from x to its k-th nearest
    other point of its own set (Naeem et al., eqs. 1-4):
      precision = 1/M sum_j 1[exists i: f_j in B(r_i, NND_k(r_i))]   share of fakes on the real manifold
      recall    = 1/N sum_i 1[exists j: r_i in B(f_j, NND_k(f_j))]   share of reals on the fake manifold
      density   = 1/(kM) sum_j sum_i 1[f_j in B(r_i, NND_k(r_i))]    how many real balls hold a fake, /k
      coverage  = 1/N sum_i 1[exists j: f_j in B(r_i, NND_k(r_i))]   share of real balls holding a fake
    Closed balls (<=): the authors' code (clovaai/generative-evaluation-prdc, prdc.py) compares with
    a strict <, which differs only on ties, e.g. a real point with k duplicates has radius 0 and then
    holds nothing, not even its own copy. float64 throughout. ``real_radius``: ``knn_radius(real, k)``
    when several sets are measured against one real set (it is the costly part).
    Recall needs the fakes' own k-NN radii: with M <= k fakes (IPC 1 on 5 classes) it is undefined, None.
    """
    real, fake = real.flatten(1).double(), fake.flatten(1).double()
    r_radius = knn_radius(real, k) if real_radius is None else real_radius  # (N,)
    d = torch.cdist(real, fake)  # (N, M)
    in_real = d <= r_radius[:, None]  # fake j inside real i's ball
    recall = None
    if len(fake) > k:
        f_radius = knn_radius(fake, k)  # (M,)
        recall = (d <= f_radius[None, :]).any(1).double().mean().item()
    return {
        "precision": in_real.any(0).double().mean().item(),
        "recall": recall,
        "density": (in_real.sum(0).double().mean() / k).item(),
        "coverage": in_real.any(1).double().mean().item(),
    }
