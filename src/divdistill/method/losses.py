"""Training losses: DiT's hybrid diffusion loss and the Minimax memory losses.

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

import math
from typing import Protocol

import torch
import torch.nn.functional as F

LAMBDA_REAL = 0.002
LAMBDA_GEN = 0.008


class MemoryLike(Protocol):
    def get(self, c: int) -> torch.Tensor | None: ...


# ----------------------------------------------------------------------------- memory losses


def require_finite(loss: torch.Tensor, step: int, what: str = "loss") -> None:
    """Stop a training job loudly at the first nan/inf loss (its MLflow run then ends FAILED) rather
    than train on and save garbage weights."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"{what} is {loss.detach().flatten()[0].item()} at step {step}: stopping "
                                 "(the learning rate or a loss weight may be too large, or an input holds nan/inf)")


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


# ----------------------------------------------------------------------------- diffusion loss


def _extract(arr: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """arr (T,) gathered at t (B,) -> (B, 1, ..., 1) broadcastable to `like`, in like's dtype."""
    out = arr.to(t.device)[t].to(like.dtype)
    return out.view(-1, *([1] * (like.ndim - 1)))


def predict_x0(z_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """z0_hat = (z_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); z_t, eps (B, *), t (B,) -> (B, *)."""
    abar = _extract(alphas_cumprod, t, z_t)
    return (z_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """log-likelihood (nats, elementwise) of x under a Gaussian discretised to 256 bins on [-1, 1]."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_std_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def _posterior_coeffs(scheduler) -> dict[str, torch.Tensor]:
    """q(x_{t-1} | x_t, x_0) coefficients (float64, shape (T,)) from a diffusers DDPMScheduler."""
    betas = scheduler.betas.double()
    abar = scheduler.alphas_cumprod.double()
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    post_var = betas * (1 - abar_prev) / (1 - abar)
    return {
        "log_beta": betas.log(),
        "post_logvar_clipped": torch.cat([post_var[1:2], post_var[1:]]).log(),
        "mean_coef1": betas * abar_prev.sqrt() / (1 - abar),
        "mean_coef2": (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar),
        "abar": abar,
    }


def diffusion_loss(
    model_output: torch.Tensor,  # (B, C_out, H, W); C_out = 2C (eps, v) for learned sigma, else C
    z0: torch.Tensor,  # (B, C, H, W) clean latents
    z_t: torch.Tensor,  # (B, C, H, W) noised latents
    t: torch.Tensor,  # (B,) int timesteps
    noise: torch.Tensor,  # (B, C, H, W) the eps used to make z_t
    scheduler,  # diffusers DDPMScheduler (provides betas / alphas_cumprod)
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_diff = mean_b [ mean(eps - eps_theta)^2 + vb ] (vb only for learned variance, C_out == 2C).

    Learned-range variance: frac = (v + 1) / 2,
    log var = frac log(beta_t) + (1 - frac) log(posterior_variance_clipped_t);
    mean = posterior mean at x0 = predict_x0(z_t, eps_theta.detach());
    vb = KL(q || p) / ln 2 for t > 0, -log p_discretized(z0) / ln 2 for t == 0, each averaged over non-batch dims.
    """
    c = z0.shape[1]
    out = model_output.float()
    eps, z0, z_t, noise = out[:, :c], z0.float(), z_t.float(), noise.float()
    mse = ((noise - eps) ** 2).flatten(1).mean(1)  # (B,)
    if out.shape[1] == c:
        loss = mse.mean()
        return loss, {"mse": loss.item(), "vb": 0.0}
    assert out.shape[1] == 2 * c, f"model output has {out.shape[1]} channels, expected {c} or {2 * c}"
    v = out[:, c:]  # (B, C, H, W) in ~[-1, 1]
    k = {n: _extract(a, t, z0) for n, a in _posterior_coeffs(scheduler).items()}  # each (B, 1, 1, 1)
    frac = (v + 1) / 2
    model_logvar = frac * k["log_beta"] + (1 - frac) * k["post_logvar_clipped"]
    x0_pred = (z_t - (1 - k["abar"]).sqrt() * eps.detach()) / k["abar"].sqrt()  # stop-grad on the mean
    model_mean = k["mean_coef1"] * x0_pred + k["mean_coef2"] * z_t
    true_mean = k["mean_coef1"] * z0 + k["mean_coef2"] * z_t
    kl = normal_kl(true_mean, k["post_logvar_clipped"], model_mean, model_logvar).flatten(1).mean(1) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(z0, model_mean, 0.5 * model_logvar).flatten(1).mean(1) / math.log(2.0)
    vb = torch.where(t.to(kl.device) == 0, nll, kl)  # (B,)
    loss = (mse + vb).mean()
    return loss, {"mse": mse.mean().item(), "vb": vb.mean().item()}
