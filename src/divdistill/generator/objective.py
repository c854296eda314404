"""DiT's training objective: improved-DDPM's hybrid loss, as DiT trains it with learned variance.

L_diff = mse(eps, eps_theta) + vb, where vb = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) in bits (t > 0) or
the discretized-Gaussian decoder NLL in bits (t = 0), with the mean prediction detached for vb; and the
predicted clean latent z0_hat = (z_t - sqrt(1 - abar_t) * eps_theta) / sqrt(abar_t). The demo's
pretraining minimises it alone; the method (method/losses.py, eq. 6) adds the memory terms to it.
"""

from __future__ import annotations

import math

import torch

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
