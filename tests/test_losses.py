"""Loss values vs. independent numpy/loop computations."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from divdistill.generator.objective import diffusion_loss, predict_x0
from divdistill.method.losses import cosine_matrix, diversity_loss, memory_loss, representativeness_loss


class DictMemory:
    def __init__(self, d):
        self.d = d

    def get(self, c):
        return self.d.get(c)


def np_cos(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def sched():
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")


def test_cosine_matrix_matches_loops():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 2, 2, 2, generator=g), torch.randn(5, 2, 2, 2, generator=g)
    got = cosine_matrix(a, b)
    assert got.shape == (3, 5)
    for i in range(3):
        for m in range(5):
            assert got[i, m].item() == pytest.approx(np_cos(a[i], b[m]), abs=1e-6)
    assert cosine_matrix(a, a).diagonal().sub(1).abs().max() < 1e-6


def test_rep_and_div_hand_values():
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    mem = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    # sims: row0 [0, 1, -1], row1 [1/sqrt2, 1/sqrt2, -1/sqrt2]
    assert representativeness_loss(z, mem).item() == pytest.approx(1 - (-1), abs=1e-6)
    assert diversity_loss(z, mem).item() == pytest.approx(1.0, abs=1e-6)
    assert representativeness_loss(z, mem[:1]).item() == pytest.approx(1 - 0.0, abs=1e-6)
    assert diversity_loss(z, mem[:1]).item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)


def test_memory_loss_eq6_normalisation_and_skips():
    g = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    z = torch.randn(6, 2, 3, 3, generator=g, requires_grad=True)
    real = DictMemory({0: torch.randn(4, 2, 3, 3, generator=g), 1: torch.randn(2, 2, 3, 3, generator=g),
                       2: torch.zeros(0, 2, 3, 3)})  # class 2: empty real memory
    gen = DictMemory({0: torch.randn(3, 2, 3, 3, generator=g)})  # classes 1, 2: no gen memory
    lr_, lg_ = 0.002, 0.008
    loss, logs = memory_loss(z, labels, real, gen, lr_, lg_)

    zn = z.detach().numpy()
    exp_terms, reals, gens = 0.0, [], []
    for c in (0, 1, 2):
        idx = [i for i in range(6) if labels[i] == c]
        for mem, store in ((real, reals), (gen, gens)):
            m = mem.get(c)
            if m is None or len(m) == 0:
                continue
            sims = [np_cos(zn[i], m[j].numpy()) for i in idx for j in range(len(m))]
            store.append(1 - min(sims) if mem is real else max(sims))
        exp_terms += lr_ * (reals[-1] if c in (0, 1) else 0.0) + lg_ * (gens[-1] if c == 0 else 0.0)
    assert len(reals) == 2 and len(gens) == 1
    assert loss.item() == pytest.approx(exp_terms / 3, rel=1e-5)  # normaliser: 3 classes in batch
    assert logs["loss_real"] == pytest.approx(np.mean(reals), rel=1e-5)
    assert logs["loss_gen"] == pytest.approx(gens[0], rel=1e-5)

    loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert z.grad[3].abs().sum() == 0  # class 2 has no memory -> no gradient


def test_memory_loss_all_empty_is_zero():
    z = torch.randn(2, 4, requires_grad=True)
    loss, logs = memory_loss(z, torch.tensor([0, 1]), DictMemory({}), None, 0.002, 0.008)
    assert loss.item() == 0.0 and logs == {"loss_real": 0.0, "loss_gen": 0.0}


def test_predict_x0_inverts_add_noise(sched):
    g = torch.Generator().manual_seed(2)
    z0, eps = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    zt = sched.add_noise(z0, eps, t)
    torch.testing.assert_close(predict_x0(zt, eps, t, sched.alphas_cumprod), z0, atol=1e-3, rtol=1e-3)


def _np_reference_vb(z0, zt, eps_pred, v, t, betas):
    """Independent float64 reference: KL of Gaussians (t>0) / discretized NLL (t=0), bits, per sample."""
    abar = np.cumprod(1 - betas)
    out = []
    for b in range(z0.shape[0]):
        tb = int(t[b])
        ab, ab_prev, beta = abar[tb], (abar[tb - 1] if tb > 0 else 1.0), betas[tb]
        post_var = lambda s: betas[s] * (1 - abar[s - 1]) / (1 - abar[s])  # noqa: E731, s >= 1
        var_q = post_var(max(tb, 1))  # clipped: t=0 uses t=1's value
        coef_x0, coef_xt = math.sqrt(ab_prev) * beta / (1 - ab), math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
        mu_q = coef_x0 * z0[b] + coef_xt * zt[b]
        x0_hat = (zt[b] - math.sqrt(1 - ab) * eps_pred[b]) / math.sqrt(ab)
        mu_p = coef_x0 * x0_hat + coef_xt * zt[b]
        frac = (v[b] + 1) / 2
        var_p = np.exp(frac * np.log(beta) + (1 - frac) * np.log(var_q))
        if tb > 0:
            kl = np.log(np.sqrt(var_p) / np.sqrt(var_q)) + (var_q + (mu_q - mu_p) ** 2) / (2 * var_p) - 0.5
            out.append(kl.mean() / np.log(2))
        else:
            cdf = lambda x: 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))  # noqa: E731
            s = np.sqrt(var_p)
            x = z0[b]
            up, lo = cdf((x - mu_p + 1 / 255) / s), cdf((x - mu_p - 1 / 255) / s)
            p = np.where(x < -0.999, up, np.where(x > 0.999, 1 - lo, up - lo))
            out.append(-np.log(np.maximum(p, 1e-12)).mean() / np.log(2))
    return np.array(out)


def test_diffusion_loss_learned_sigma_matches_reference(sched):
    g = torch.Generator().manual_seed(3)
    B, C = 4, 2
    z0 = torch.rand(B, C, 4, 4, generator=g) * 1.6 - 0.8
    z0[0, 0, 0, 0], z0[0, 0, 0, 1] = 1.0, -1.0  # hit both edge branches of the decoder NLL
    noise = torch.randn(B, C, 4, 4, generator=g)
    t = torch.tensor([0, 1, 37, 900])
    zt = sched.add_noise(z0, noise, t)
    eps_pred = noise + 0.3 * torch.randn(B, C, 4, 4, generator=g)
    v = torch.rand(B, C, 4, 4, generator=g) * 2 - 1
    out = torch.cat([eps_pred, v], 1).requires_grad_(True)

    loss, logs = diffusion_loss(out, z0, zt, t, noise, sched)
    betas = sched.betas.double().numpy()
    vb = _np_reference_vb(*(x.double().numpy() for x in (z0, zt, eps_pred, v)), t.numpy(), betas)
    mse = ((noise - eps_pred) ** 2).double().numpy().reshape(B, -1).mean(1)
    assert logs["mse"] == pytest.approx(mse.mean(), rel=1e-5)
    assert logs["vb"] == pytest.approx(vb.mean(), rel=1e-3)
    assert loss.item() == pytest.approx((mse + vb).mean(), rel=1e-3)

    # vb's mean prediction is detached: grad wrt the eps half is exactly the MSE gradient.
    loss.backward()
    torch.testing.assert_close(out.grad[:, :C], -2 * (noise - eps_pred) / noise.numel())
    assert out.grad[:, C:].abs().sum() > 0  # variance half is trained by vb


def test_diffusion_loss_fixed_sigma_is_mse(sched):
    g = torch.Generator().manual_seed(4)
    z0, noise, pred = (torch.randn(3, 4, 4, 4, generator=g) for _ in range(3))
    t = torch.tensor([5, 50, 500])
    loss, logs = diffusion_loss(pred, z0, sched.add_noise(z0, noise, t), t, noise, sched)
    assert loss.item() == pytest.approx(((pred - noise) ** 2).mean().item(), rel=1e-6)
    assert logs["vb"] == 0.0


def test_paper_code_accumulation_against_hand_computed_values():
    """The fork (train_dit.py L199-230) adds its running sums real_loss + gen_loss to the loss once per
    class of ``set(lbl)``. Batch in memory labels [30, 80, 0, 50], dataset-local labels [3, 8, 0, 5]:
    Python's set {3, 8, 0, 5} iterates 8, 0, 3, 5 (8 and 0 share a hash slot), i.e. memory labels
    80, 0, 30, 50 - neither sorted nor first-seen order. With lambda_r = 0.5, lambda_g = 2, 2-D latents:
      80: z = (1, 0), real {(-1, 0)}: L_r = 1 - (-1) = 2;  gen {(0, 1)}: L_g = 0  -> term 0.5 * 2 = 1
       0: z = (0, 1), real {(0, 1)}:  L_r = 0;             gen {(0, 1)}: L_g = 1  -> term 2 * 1 = 2
      30: z = (1, 0), real {(0, 1)}:  L_r = 1;             gen {(1, 0)}: L_g = 1  -> term 0.5 + 2 = 2.5
      50: empty memories                                                        -> term 0
    n = 4. Equation (6): (1 + 2 + 2.5 + 0) / 4 = 1.375.
    Paper code: running sums 1/4, 3/4, 5.5/4, 5.5/4 added once each = (4*1 + 3*2 + 2*2.5 + 1*0) / 4 = 3.75
    (sorted order would give (4*2 + 3*2.5 + 2*1) / 4 = 4.375, first-seen order (4*2.5 + 3*1 + 2*2) / 4 = 4.25)."""
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([30, 80, 0, 50])
    real = DictMemory({80: torch.tensor([[-1.0, 0.0]]), 0: torch.tensor([[0.0, 1.0]]), 30: torch.tensor([[0.0, 1.0]])})
    gen = DictMemory({80: torch.tensor([[0.0, 1.0]]), 0: torch.tensor([[0.0, 1.0]]), 30: torch.tensor([[1.0, 0.0]])})
    local_of = {30: 3, 80: 8, 0: 0, 50: 5}
    eq6, logs = memory_loss(z, labels, real, gen, 0.5, 2.0)
    assert eq6.item() == pytest.approx(1.375, abs=1e-6)
    code, logs_code = memory_loss(z, labels, real, gen, 0.5, 2.0, "paper_code", local_of)
    assert code.item() == pytest.approx(3.75, abs=1e-6)
    assert logs_code == logs and logs["loss_real"] == pytest.approx(1.0) and logs["loss_gen"] == pytest.approx(2 / 3)
    # without local labels the memory labels themselves are visited in set order: {30, 80, 0, 50} -> 80, 0, 50, 30
    alone, _ = memory_loss(z, labels, real, gen, 0.5, 2.0, "paper_code")
    assert list(set([30, 80, 0, 50])) == [80, 0, 50, 30]
    assert alone.item() == pytest.approx((4 * 1 + 3 * 2 + 2 * 0 + 1 * 2.5) / 4, abs=1e-6)
    with pytest.raises(ValueError, match="weighting must be one of"):
        memory_loss(z, labels, real, gen, 0.5, 2.0, "eq7")
