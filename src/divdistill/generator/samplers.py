"""Samplers: how a generative method's distilled set is drawn from its DiT (pretrained or fine-tuned).

A generative method is a fine-tuning recipe (none, DiffFit, DiffFit with memories, ...) times a sampler.
Every sampler here runs DiT's guided ancestral DDPM (generator/sample.py) and differs in where a chain
starts or what pulls it:

    ddpm            plain: z_T ~ N(0, I), every respaced step ancestral (DiT's sample.py)
    mode_guidance   MGD³ (Chan-Santiago et al., ICML 2025): per class, k-means with k = IPC on the real
                    training latents; image j of a class is tied to centre m_j, and while the respaced
                    step index is above ``stop_t`` each step's mean moves by  scale * sigma_t * (m_j - x0_hat)
    prototype       D⁴M on DiT (Su et al., CVPR 2024): the same per-class k-means centres, each noised by
                    eq. (1) to the respaced step ``steps - int(steps * strength)`` and denoised from there
                    with the class condition (SDEdit from prototypes)

k-means makes one set per IPC (its k is the IPC), so those sets are not nested prefixes: the name table
(experiment/methods.py ``SAMPLERS``) marks them ``per_ipc`` and ``needs_real`` (the latent cache), torch-free
for the workflow's checks. docs/protocol.md holds each item against the reference code (file and line).

A sampler of one's own is a function with the signature of :func:`ddpm`, named in params.yaml's
``samplers`` section (README "Extending").
"""

from __future__ import annotations

import numpy as np
import torch

from .sample import sample_latents


def class_modes(real: dict[int, torch.Tensor], k: int) -> dict[int, torch.Tensor]:
    """Per class label: k-means centres (k, c, h, w) of its real latents (n, c, h, w), in scikit-learn's
    order, as MGD³ finds modes: ``KMeans(n_clusters=IPC, random_state=0, n_init="auto")`` on the
    flattened latents (float32). One thread: the centres do not depend on the machine's core count."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    out = {}
    with threadpool_limits(1):
        for c, z in sorted(real.items()):
            if len(z) < k:
                raise ValueError(f"class {c}: {len(z)} real latents, fewer than the {k} modes asked for")
            x = z.reshape(len(z), -1).to(torch.float32).numpy()  # (n, D)
            centres = KMeans(n_clusters=k, random_state=0, n_init="auto").fit(x).cluster_centers_
            out[c] = torch.from_numpy(np.ascontiguousarray(centres, dtype=np.float32)).view(k, *z.shape[1:])
    return out


_LAST: dict = {}  # the modes of the last (real latents, k): a job samples every seed from the same ones


def _tied(real, labels: torch.Tensor, index: torch.Tensor, ipc: int) -> torch.Tensor:
    """The centre each image is tied to: image (label y, index j) -> mode j of class y. (N, c, h, w)"""
    if not (_LAST.get("real") is real and _LAST.get("k") == ipc):
        _LAST.update(real=real, k=ipc, modes=class_modes(real, ipc))
    modes = _LAST["modes"]
    return torch.stack([modes[int(y)][int(j)] for y, j in zip(labels.tolist(), index.tolist())])


def ddpm(dit, labels, *, index, seed, ipc, real=None, **settings) -> torch.Tensor:
    """DiT's guided ancestral sampler from pure noise (``ipc`` and ``real`` unused)."""
    return sample_latents(dit, labels, index=index, seed=seed, **settings)


def mode_guidance(dit, labels, *, index, seed, ipc, real, scale: float = 0.1, stop_t: int = 25,
                  **settings) -> torch.Tensor:
    """MGD³: DDPM with each chain pulled toward its class mode while the respaced step index > stop_t."""
    modes = _tied(real, labels, index, ipc)
    return sample_latents(dit, labels, index=index, seed=seed, modes=modes, mode_scale=scale, mode_stop=stop_t,
                          **settings)


def prototype(dit, labels, *, index, seed, ipc, real, strength: float = 0.7, **settings) -> torch.Tensor:
    """D⁴M on DiT: each class prototype noised to ``strength`` of the respaced chain, then denoised."""
    return sample_latents(dit, labels, index=index, seed=seed, start=_tied(real, labels, index, ipc),
                          strength=strength, **settings)
