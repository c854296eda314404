"""The sampler axis (generator/samplers.py) against independent expectations: MGD³'s mode-guided step by
hand, scale 0 = plain DDPM bit for bit, no pull at or below stop_t (a recording model), k-means modes
deterministic and equal to planted means; D⁴M at strength 0 = its prototypes, and its first chain state
= eq. (1) at the chosen respaced timestep."""

import math

import pytest
import torch

import divdistill.generator.sample as sample_module
from divdistill.experiment import methods
from divdistill.generator.sample import ancestral_step, dit_timesteps, image_noise, make_scheduler
from divdistill.generator.samplers import class_modes, ddpm, mode_guidance, prototype

NULL = 10

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def real():
    """Two classes (generator labels 3 and 7) of 12 real latents (4, 8, 8) each."""
    g = torch.Generator().manual_seed(1)
    return {3: torch.randn(12, 4, 8, 8, generator=g), 7: 2 + torch.randn(12, 4, 8, 8, generator=g)}


LABELS, INDEX = torch.tensor([3, 3, 7, 7]), torch.tensor([0, 1, 0, 1])
KW = dict(index=INDEX, seed=0, ipc=2, steps=6, guidance=4.0, guidance_channels=3, null_label=NULL, progress=False)


def test_the_mode_guided_step_equals_a_hand_computed_update():
    # one latent value; k: the step's coefficients (sample.step_table's names)
    k = {"sqrt_abar": 0.6, "sqrt_1m_abar": 0.8, "coef_x0": 0.3, "coef_xt": 0.5, "min_log": -4.0, "max_log": -2.0}
    x, eps, v, noise, mode = 1.0, 0.5, 0.0, -1.0, 2.0
    x0 = (1.0 - 0.8 * 0.5) / 0.6  # 1.0
    mean = 0.3 * x0 + 0.5 * 1.0  # 0.8
    sigma = math.exp(0.5 * (0.5 * -2.0 + 0.5 * -4.0))  # exp(-1.5)
    expected = mean + 0.1 * sigma * (mode - x0) + sigma * noise  # MGD³ code: + scale * sigma * (m - x0_hat)
    t = lambda a: torch.full((1, 1, 1, 1), a)  # noqa: E731
    got = ancestral_step(t(x), t(eps), t(v), k, t(noise), t(mode), 0.1)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert got.item() == pytest.approx(0.8 + 0.1 * math.exp(-1.5) - math.exp(-1.5), rel=1e-6)
    assert ancestral_step(t(x), t(eps), t(v), k, None, t(mode), 0.1).item() == pytest.approx(mean)  # t = 0


def test_scale_zero_is_the_plain_sampler_bit_for_bit(dit, real):
    plain = ddpm(dit, LABELS, **KW)
    assert torch.equal(mode_guidance(dit, LABELS, real=real, scale=0.0, stop_t=0, **KW), plain)
    assert torch.equal(mode_guidance(dit, LABELS, real=real, scale=0.1, stop_t=KW["steps"] - 1, **KW), plain)
    pulled = mode_guidance(dit, LABELS, real=real, scale=0.1, stop_t=0, **KW)
    assert not torch.allclose(pulled, plain)


def test_no_pull_at_or_below_stop_t(dit, real, monkeypatch):
    """A recording step: with 6 steps (respaced indices 5..0) and stop_t = 3, the pull acts at 5 and 4."""
    seen = []
    step = sample_module.ancestral_step

    def recording(x, eps, v, k, noise, mode=None, mode_scale=0.0):
        seen.append((k["t"], mode is not None))
        return step(x, eps, v, k, noise, mode, mode_scale)

    monkeypatch.setattr(sample_module, "ancestral_step", recording)
    mode_guidance(dit, LABELS, real=real, scale=0.1, stop_t=3, **KW)
    assert seen == [(t, i < 2) for i, t in enumerate(dit_timesteps(6))]


def test_modes_are_deterministic_and_find_planted_means():
    g = torch.Generator().manual_seed(0)
    planted = torch.tensor([[-5.0] * 8, [0.0] * 8, [5.0] * 8]).view(3, 2, 2, 2)  # 3 modes, (2, 2, 2) latents
    z = torch.cat([m + 0.1 * torch.randn(40, 2, 2, 2, generator=g) for m in planted])
    a, b = class_modes({0: z}, 3), class_modes({0: z.clone()}, 3)
    assert torch.equal(a[0], b[0])
    found = sorted(a[0], key=lambda c: c.mean().item())
    for c, m in zip(found, planted):
        assert torch.allclose(c, m, atol=0.05)
    with pytest.raises(ValueError, match="fewer than"):
        class_modes({0: z[:2]}, 3)


def test_image_j_is_tied_to_mode_j(dit, real):
    modes = class_modes(real, 2)
    out = prototype(dit, LABELS, real=real, strength=0.0, **KW)  # strength 0: the prototypes themselves
    assert torch.equal(out, torch.stack([modes[3][0], modes[3][1], modes[7][0], modes[7][1]]))


def test_prototype_noising_is_eq1_at_the_chosen_timestep(dit, real, monkeypatch):
    first_input = []
    forward = type(dit).forward

    def recording(self, hidden_states, *args, **kwargs):
        if not first_input:
            first_input.append(hidden_states[: len(LABELS)].clone())  # the conditional half of the CFG batch
        return forward(self, hidden_states, *args, **kwargs)

    monkeypatch.setattr(type(dit), "forward", recording)
    prototype(dit, LABELS, real=real, strength=0.5, **KW)
    steps = KW["steps"]
    t = dit_timesteps(steps)[steps - int(steps * 0.5)]  # the 4th of 6: DDPM img2img's start
    abar = make_scheduler().alphas_cumprod.double()[t]
    modes = class_modes(real, 2)
    z0 = torch.stack([modes[3][0], modes[3][1], modes[7][0], modes[7][1]]).double()
    eps = image_noise(0, LABELS, INDEX, steps, (4, 8, 8))[:, 0].double()
    expected = abar.sqrt() * z0 + (1 - abar).sqrt() * eps  # eq. (1)
    assert torch.allclose(first_input[0].double(), expected, atol=1e-5)


def test_the_name_table_knows_the_new_methods():
    assert methods.get("mgd3").sampler == "mode_guidance" and methods.get("mgd3").generator is None
    assert methods.get("d4m").sampler == "prototype" and methods.get("d4m").per_ipc
    assert not methods.get("ours").per_ipc and methods.get("dm").per_ipc
    cols = methods.names()
    assert cols.index("minimax") < cols.index("mgd3") < cols.index("d4m") < cols.index("ours")
