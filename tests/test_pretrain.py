"""Demo pretraining on tiny models: scaling factor, learning, determinism, checkpoint/resume."""

import pytest
import torch

from divdistill.generator import latents as latents_mod
from divdistill.generator.latents import TRAIN_LATENTS, encode_posterior, fingerprint, latent_cache, save_latent_cache
from divdistill.generator.pretrain import DiTConfig, VAEConfig, build_vae, set_scaling_factor, train_dit, train_vae
from divdistill.generator.weights import load_vae

VAE = dict(block_out_channels=(8, 8), norm_num_groups=4, batch_size=8, warmup_steps=2, lr=3e-3)
DIT = dict(num_layers=2, num_attention_heads=2, attention_head_dim=8, batch_size=16, warmup_steps=2, lr=3e-3,
           ema_decay=0.9)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def images():
    """Blobs of class-dependent size on a dark background: (32, 1, 16, 16) uint8, labels (32,)."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(32) % 4
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    r = (yy - 8) ** 2 + (xx - 8) ** 2
    imgs = (r[None] < (2 + 2 * labels.view(-1, 1, 1)) ** 2).float() * 200 + 20 * torch.rand(32, 16, 16, generator=g)
    return imgs[:, None].to(torch.uint8), labels


@pytest.fixture(scope="module")
def latents(images):
    g = torch.Generator().manual_seed(1)
    labels = images[1]
    mean = torch.randn(32, 4, 4, 4, generator=g) * 0.3 + labels.view(-1, 1, 1, 1).float() - 1.5
    return mean, torch.full_like(mean, 0.05), labels


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_scaling_factor_gives_unit_std(images):
    vae = build_vae(VAEConfig(**VAE), 1, 16, seed=0).eval()
    mean, std = set_scaling_factor(vae, images[0])
    assert mean.std().item() == pytest.approx(1.0, abs=1e-4)
    # the posterior it returns is encode_posterior's under the new factor, bit for bit
    again = encode_posterior(vae, images[0])
    assert torch.equal(mean, again[0]) and torch.equal(std, again[1])


def test_the_vae_jobs_posterior_serves_the_dit_job_only_for_its_own_vae(images, tmp_path, monkeypatch):
    """pretrain-vae saves the posterior that set its scaling factor beside the weights (TRAIN_LATENTS);
    pretrain-dit reads it through the saved VAE's fingerprint instead of encoding the images again, and
    it equals a fresh encoding by that VAE bit for bit. Another VAE or other images: encoded anew."""
    vae, (mean, std) = train_vae(images[0], VAEConfig(**VAE, steps=3), seed=0, progress=False)
    vae.save_pretrained(tmp_path / "vae")  # as the job does
    save_latent_cache(tmp_path / "vae" / TRAIN_LATENTS, {"mean": mean, "std": std}, fingerprint(vae, images[0]))
    loaded = load_vae(tmp_path / "vae")
    read = lambda v, x: latent_cache(v, x, tmp_path / "vae" / TRAIN_LATENTS, flip=False, write=False)  # noqa: E731
    fresh = encode_posterior(loaded, images[0])
    assert torch.equal(fresh[0], mean) and torch.equal(fresh[1], std)
    with monkeypatch.context() as m:
        m.setattr(latents_mod, "cache_latents", lambda *a, **k: pytest.fail("encoded a cached posterior"))
        cached = read(loaded, images[0])
    assert torch.equal(cached["mean"], mean) and torch.equal(cached["std"], std)
    before = (tmp_path / "vae" / TRAIN_LATENTS).read_bytes()
    other = build_vae(VAEConfig(**VAE), 1, 16, seed=1).eval()
    other.register_to_config(scaling_factor=loaded.config.scaling_factor)
    assert torch.equal(read(other, images[0])["mean"], encode_posterior(other, images[0])[0])
    flipped = images[0].flip(-1)
    assert torch.equal(read(loaded, flipped)["mean"], encode_posterior(loaded, flipped)[0])
    assert (tmp_path / "vae" / TRAIN_LATENTS).read_bytes() == before  # write=False: the VAE's folder untouched


def test_vae_learns(images):
    log = []
    train_vae(images[0], VAEConfig(**VAE, steps=20), seed=0, on_step=lambda s, m: log.append(m["mse"]),
              progress=False)
    assert len(log) == 20 and sum(log[-5:]) < 0.8 * sum(log[:5])


def test_dit_learns_and_restores_label_dropout(latents):
    log = []
    dit = train_dit(*latents, num_classes=4, cfg=DiTConfig(**DIT, steps=40), seed=0,
                    on_step=lambda s, m: log.append(m["loss"]), progress=False)
    assert sum(log[-8:]) < 0.8 * sum(log[:8])
    assert not dit.training and all(b.norm1.emb.class_embedder.dropout_prob == 0.1 for b in dit.transformer_blocks)
    assert dit.config.num_embeds_ada_norm == 4 and dit.config.out_channels == 8


def _interrupted_then_resumed(train, ckpt, steps_at_interrupt):
    def stop(step, _):
        if step == steps_at_interrupt:
            raise Interrupt
    with pytest.raises(Interrupt):
        train(ckpt, stop)
    seen = []
    model = train(ckpt, lambda s, m: seen.append(s))
    assert seen[0] == steps_at_interrupt + 1  # resumed, not restarted
    return model


def test_vae_resume_is_exact(images, tmp_path):
    cfg = VAEConfig(**VAE, steps=6)
    run = lambda ckpt, cb=None: train_vae(images[0], cfg, seed=3, on_step=cb, checkpoint_path=ckpt,  # noqa: E731
                                          checkpoint_every=3, progress=False)[0]
    ref = run(None)
    resumed = _interrupted_then_resumed(run, tmp_path / "vae.pt", 3)
    assert_same(weights(ref), weights(resumed))
    assert ref.config.scaling_factor == resumed.config.scaling_factor
    assert_same(weights(ref), weights(run(tmp_path / "vae.pt")))  # finished checkpoint: same result again


def test_dit_resume_is_exact_and_checks_config(latents, tmp_path):
    cfg = DiTConfig(**DIT, steps=6)
    run = lambda ckpt, cb=None, c=cfg: train_dit(*latents, num_classes=4, cfg=c, seed=3, on_step=cb,  # noqa: E731
                                                 checkpoint_path=ckpt, checkpoint_every=3, progress=False)
    ref = weights(run(None))
    assert_same(ref, weights(run(None)))  # deterministic
    resumed = _interrupted_then_resumed(run, tmp_path / "dit.pt", 3)
    assert_same(ref, weights(resumed))  # the EMA weights, hence model, optimiser, RNG and step all restored
    # another learning rate (the pretrain.dit.lr): trained fresh beside the finished checkpoint
    other = DiTConfig(**{**DIT, "lr": 1e-3}, steps=6)
    assert_same(weights(run(tmp_path / "dit.pt", c=other)), weights(run(None, c=other)))
    assert len([d for d in (tmp_path / "dit.pt").iterdir() if d.is_dir()]) == 2


def test_fp32_attention_is_diffusers_processor_bit_for_bit_without_autocast():
    """generator/attention.py: forward and gradients equal diffusers' AttnProcessor2_0's exactly in fp32."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from divdistill.generator.attention import Fp32Attention, default_attention, use_fp32_attention
    from divdistill.generator.pretrain import build_dit

    a, b = (build_dit(DiTConfig(**DIT), 4, 4, 4, seed=0).train() for _ in range(2))
    use_fp32_attention(b)
    assert all(isinstance(blk.attn1.processor, Fp32Attention) for blk in b.transformer_blocks)
    g = torch.Generator().manual_seed(0)
    z, t, y = torch.randn(6, 4, 4, 4, generator=g), torch.randint(0, 1000, (6,), generator=g), torch.arange(6) % 4
    for model in (a, b):
        torch.manual_seed(1)  # diffusers' label dropout draws from the global generator in train mode
        model(z, timestep=t, class_labels=y).sample.square().mean().backward()
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters()))
    default_attention(b)
    assert all(type(blk.attn1.processor) is AttnProcessor2_0 for blk in b.transformer_blocks)


def test_bf16_pretraining_takes_the_attention_product_in_fp32_and_returns_diffusers_processor(latents, monkeypatch):
    """DiTConfig.precision "bf16": the matmuls in bf16 (autocast), the attention product's inputs fp32 (its
    bf16 backward is the slow kernel on the CPU); the returned model samples with diffusers' processor."""
    import torch.nn.functional as F
    from diffusers.models.attention_processor import AttnProcessor2_0

    seen, sdpa = [], F.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    log = []
    dit = train_dit(*latents, num_classes=4, cfg=DiTConfig(**DIT, steps=40, precision="bf16"), seed=0,
                    on_step=lambda s, m: log.append(m["loss"]), progress=False)
    assert seen and set(seen) == {(torch.float32, False)}  # every product in fp32, outside autocast
    assert sum(log[-8:]) < 0.8 * sum(log[:8])  # it learns
    assert all(type(blk.attn1.processor) is AttnProcessor2_0 for blk in dit.transformer_blocks)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a linear inside the model runs in bf16
        assert dit.transformer_blocks[0].attn1.to_q(torch.randn(2, 16)).dtype == torch.bfloat16
