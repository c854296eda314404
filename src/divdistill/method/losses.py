"""Training losses: the Minimax memory losses, beside DiT's hybrid diffusion loss (generator/objective.py).

Notation (arXiv 2505.19469): cosine similarity sigma(a, b) = a.b / (|a| |b|) on flattened latents,
predicted clean latent  z0_hat = (z_t - sqrt(1 - abar_t) * eps_theta) / sqrt(abar_t).

    (4) L_r,c = 1 - min_{i in batch_c, m in M_r,c} sigma(z0_hat_i, m)      representativeness
    (5) L_g,c =     max_{i in batch_c, m in M_g,c} sigma(z0_hat_i, m)      diversity
    (6) L = L_diff + sum_{c in batch} (lambda_r L_r,c + lambda_g L_g,c) / #classes_in_batch

L_diff is improved-DDPM's hybrid loss as DiT trains it with learned variance:
mse(eps, eps_theta) + vb, where vb = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) in bits (t > 0) or the
discretized-Gaussian decoder NLL in bits (t = 0), with the mean prediction detached for vb.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

LAMBDA_REAL = 0.002
LAMBDA_GEN = 0.008


class MemoryLike(Protocol):
    def get(self, c: int) -> torch.Tensor | None: ...


# ----------------------------------------------------------------------------- memory losses


def cosine_matrix(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """sigma(a_i, b_m) for a (B, *) and b (M, *) -> (B, M), on flattened vectors."""
    a = F.normalize(a.flatten(1), dim=1, eps=eps)  # (B, D)
    b = F.normalize(b.flatten(1).to(a), dim=1, eps=eps)  # (M, D)
    return a @ b.T  # (B, M)


def representativeness_loss(z0_hat: torch.Tensor, real_mem: torch.Tensor) -> torch.Tensor:
    """Eq. (4): 1 - min_{i,m} sigma(z0_hat_i, m); z0_hat (B, *), real_mem (M, *) -> scalar."""
    return 1.0 - cosine_matrix(z0_hat, real_mem.detach()).min()


def diversity_loss(z0_hat: torch.Tensor, gen_mem: torch.Tensor) -> torch.Tensor:
    """Eq. (5): max_{i,m} sigma(z0_hat_i, m); z0_hat (B, *), gen_mem (M, *) -> scalar."""
    return cosine_matrix(z0_hat, gen_mem.detach()).max()


def _nonempty(mem: MemoryLike | None, c: int) -> torch.Tensor | None:
    m = None if mem is None else mem.get(c)
    return m if m is not None and m.shape[0] > 0 else None


WEIGHTINGS = ("eq6", "paper_code")


def memory_loss(
    z0_hat: torch.Tensor,  # (B, C, H, W)
    labels: torch.Tensor,  # (B,) int
    real_memory: MemoryLike | None,
    gen_memory: MemoryLike | None,
    lambda_real: float = LAMBDA_REAL,
    lambda_gen: float = LAMBDA_GEN,
    weighting: str = "eq6",
    local_of: dict[int, int] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Memory part of eq. (6): sum_c (lambda_r L_r,c + lambda_g L_g,c) / n, n = #distinct classes in batch.

    A class whose real (gen) memory is empty / None contributes no L_r (L_g) term, but still counts in
    n. Returns (scalar loss, {'loss_real', 'loss_gen'}): unweighted L_r / L_g averaged over the classes
    where each was computed (0.0 where none was).

    ``weighting="paper_code"`` reproduces the paper's public code instead (SumomoTaku/
    diversityDDwithSSMemory ``train_dit.py`` L199-230): inside its loop over ``set(lbl)`` it adds the
    *running* sums of the terms to the loss once per class, so with classes visited in order
    c_1..c_n the loss gains sum_j (n - j + 1) (lambda_r L_r,c_j + lambda_g L_g,c_j) / n. The visiting
    order is Python's iteration order of ``set`` over the batch's dataset-local labels (the fork's
    ``lbl``) inserted in batch order; ``local_of`` maps a memory label to that local label (default:
    the label itself).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if weighting == "eq6":
        classes = labels.unique().tolist()
    else:
        to_local = (lambda c: c) if local_of is None else local_of.__getitem__
        to_memory = {to_local(c): c for c in labels.tolist()}
        classes = [to_memory[lc] for lc in set(to_local(c) for c in labels.tolist())]  # the fork's order
    n = max(len(classes), 1)
    total = z0_hat.new_zeros(())
    running = z0_hat.new_zeros(())  # paper_code: the fork's real_loss + gen_loss so far
    l_real, l_gen = [], []
    for c in classes:
        zc = z0_hat[labels == c]  # (B_c, *)
        term = z0_hat.new_zeros(())
        if (m := _nonempty(real_memory, c)) is not None:
            lr = representativeness_loss(zc, m)
            term = term + lambda_real * lr
            l_real.append(lr.detach())
        if (m := _nonempty(gen_memory, c)) is not None:
            lg = diversity_loss(zc, m)
            term = term + lambda_gen * lg
            l_gen.append(lg.detach())
        if weighting == "eq6":
            total = total + term
        else:
            running = running + term / n
            total = total + running  # added once per class visited, as the fork's loop does
    if weighting == "eq6":
        total = total / n
    mean = lambda xs: torch.stack(xs).mean().item() if xs else 0.0  # noqa: E731 (one sync per term)
    return total, {"loss_real": mean(l_real), "loss_gen": mean(l_gen)}
