"""Demo-scale stand-ins for the ImageNet-pretrained models (SPEC section 4).

No pretrained weights exist offline for the demo, so the ``pretrain`` stage trains, on all classes of
the demo data, a small diffusers ``AutoencoderKL`` and then a small class-conditional, learned-variance
``DiTTransformer2DModel`` on its latents. Both are ordinary diffusers models (``save_pretrained`` /
``from_pretrained``), so fine-tuning and sampling treat them exactly like DiT-XL/2 and the SD VAE.

Reproducibility: every random draw (init aside) comes from one CPU generator seeded with ``seed``; the
initialisation draws from torch's global RNG inside ``fork_rng`` seeded with ``seed``, leaving the
caller's RNG untouched. On CPU with a fixed thread count two runs are bit-identical; in a local
Snakemake run the training may take cores the machine leaves idle, only at thread counts that give
the same bits (``threads.IdleCores``, checked on the run's own model and batch). With
``checkpoint_path`` (a folder keyed by the configuration, ``io.Checkpoints``) the model, EMA, optimiser, generator state and
step are saved atomically every ``checkpoint_every`` steps and at the end; a run finding one resumes from it and ends with the
same weights as an uninterrupted run (a finished checkpoint makes a rerun return at once).

    vae, (mean, std) = train_vae(train.images, VAEConfig(), seed=0)  # the scaled posterior of the images
    dit = train_dit(mean, std, gen_labels, num_classes=10, cfg=DiTConfig(), seed=0)
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiTTransformer2DModel
from torch.optim.swa_utils import get_ema_multi_avg_fn
from tqdm import tqdm

from ..io import Resumable, tensor_digest
from ..runtime.device import dit_autocast
from ..runtime.finite import require_finite
from ..runtime.threads import IdleCores, same_bits
from .attention import default_attention, use_fp32_attention
from .embedders import tie_embedders, untie_embedders
from .latents import encode_posterior, to_model_range
from .objective import diffusion_loss
from .sample import make_scheduler

OnStep = Callable[[int, dict], None]


@dataclass
class VAEConfig:
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # one Down/UpEncoderBlock2D each; len - 1 halvings
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32
    steps: int = 500  # demo: ~2 min on 2 cores, reconstruction MSE ~0.016 (in [-1, 1]) on Fashion-MNIST
    batch_size: int = 32
    lr: float = 2e-3  # AdamW, cosine decay to 0 after warmup
    warmup_steps: int = 50
    kl_weight: float = 1e-4  # on the KL per latent element (reconstruction MSE is per pixel, in [-1, 1])


@dataclass
class DiTConfig:
    num_layers: int = 6
    num_attention_heads: int = 4
    attention_head_dim: int = 32  # width = heads * head_dim
    patch_size: int = 2
    steps: int = 1500  # demo: ~3.2 min on 2 cores; 2000 steps at lr 1e-3 draw samples of the same quality
    batch_size: int = 128
    lr: float = 2e-3  # AdamW, cosine decay to 0 after warmup
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.999  # ramped up as (1 + step) / (10 + step) so a short run's EMA is not its init
    label_dropout: float = 0.1  # classifier-free guidance: label -> null label (num_classes), once per sample
    # exact GELU: DiT-XL uses the tanh approximation, which is ~5x slower than erf on CPU (a quarter of
    # the demo DiT's time); the demo model is trained from scratch, so it can use either
    activation_fn: str = "gelu"
    # the training forward's: "bf16" autocasts it, the attention product in fp32 (attention.py): 2.2x a
    precision: str = "fp32"  # step on the CPU (benchmarks/bench_kernels.py), other results than fp32's


# ----------------------------------------------------------------------------- shared training loop


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """torch's EMA (foreach lerp, ema + (1 - decay) (p - ema)), as fine-tuning's; the decay warms up."""
    get_ema_multi_avg_fn(decay)(list(ema.parameters()), [p.detach() for p in model.parameters()], None)


def _train(model: torch.nn.Module, loss_fn: Callable[[], tuple[torch.Tensor, dict]], *, steps: int, lr: float,
           warmup: int, weight_decay: float, gen: torch.Generator, fingerprint: dict,
           ema_decay: float | None, checkpoint_path, checkpoint_every: int, on_step: OnStep | None,
           desc: str, progress: bool) -> torch.nn.Module | None:
    """Run ``steps`` AdamW steps of ``loss_fn`` (which draws from ``gen``); returns the EMA model (or None).

    The checkpoint stores everything the remaining steps depend on; ``fingerprint`` (config, seed, a
    digest of the data) keys its folder (``io.Checkpoints``), so another configuration never resumes it.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ema = copy.deepcopy(model).requires_grad_(False).eval() if ema_decay is not None else None
    run = Resumable(checkpoint_path, fingerprint, checkpoint_every, steps, keep_final=True)

    def restore(ck: dict) -> None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["rng"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])

    def state() -> dict:
        out = {"model": model.state_dict(), "opt": opt.state_dict(), "rng": gen.get_state()}
        return out if ema is None else {**out, "ema": ema.state_dict()}

    start = run.start(restore)

    model.train()
    # cores the machine leaves idle, where they give the same bits (threads.py): the DiT's pretraining
    # is the demo's critical path, and the other core runs out of jobs before it ends
    own = torch.get_num_threads()
    on_cpu = next(model.parameters()).device.type == "cpu"
    cores = IdleCores.for_job(own, lambda n: same_bits(model, loss_fn, gen, own, n)) if on_cpu else None
    bar = tqdm(range(start, steps), desc=desc, file=sys.stderr, disable=not progress, leave=False,
               initial=start, total=steps)
    for step in bar:
        if cores is not None:
            cores.poll()
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        loss, metrics = loss_fn()
        require_finite(loss, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            _ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))
        metrics = {"loss": loss.item(), **metrics, "lr": opt.param_groups[0]["lr"]}
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        run.step_done(step + 1, state)  # a directory: safetensors + JSON, atomic
        if on_step is not None:  # after the save: a callback that stops the run loses no finished step
            on_step(step + 1, metrics)
    bar.close()
    if cores is not None:
        torch.set_num_threads(own)  # what follows (the sample grid) runs as the job asked
    model.eval()
    return ema


def _build(cls, seed: int, **kwargs):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(**kwargs)


# ----------------------------------------------------------------------------- VAE


def build_vae(cfg: VAEConfig, channels: int, resolution: int, seed: int = 0) -> AutoencoderKL:
    n = len(cfg.block_out_channels)
    return _build(AutoencoderKL, seed, in_channels=channels, out_channels=channels,
                  down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                  block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                  latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_num_groups,
                  sample_size=resolution)


@torch.no_grad()
def set_scaling_factor(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 256,
                       device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """scaling_factor = 1 / std of the posterior-mean latents of ``images`` (as SD's 0.18215 was chosen),
    so scaled latents have unit std; stored in the config so save_pretrained keeps it.

    Returns the images' scaled posterior mean and std (N, c, h, w), the values ``encode_posterior``
    computes (the same batches, the same products), so the DiT's pretraining need not encode them again.
    """
    mean, std = encode_posterior(vae, images, batch_size, device, scale=1.0)  # x * 1.0 == x: the raw posterior
    vae.register_to_config(scaling_factor=1.0 / mean.double().std().item())
    s = vae.config.scaling_factor
    return mean * s, std * s


def train_vae(images: torch.Tensor, cfg: VAEConfig, seed: int, on_step: OnStep | None = None, *,
              checkpoint_path=None, checkpoint_every: int = 250, device="cpu",
              progress: bool = True) -> tuple[AutoencoderKL, tuple[torch.Tensor, torch.Tensor]]:
    """Train on uint8 images (N, C, H, W): reconstruction MSE of a posterior sample + kl_weight * KL per
    latent element; then set the scaling factor from the training images. Returns the model in eval mode
    and the images' scaled posterior (mean, std), from the pass that set the factor."""
    n, c, h, _ = images.shape
    vae = build_vae(cfg, c, h, seed).to(device)
    gen = torch.Generator().manual_seed(seed)

    def loss_fn():
        x = to_model_range(images[torch.randint(n, (cfg.batch_size,), generator=gen)]).to(device)  # (B, C, H, W)
        post = vae.encode(x).latent_dist  # mean, std: (B, c, h', w')
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
        mse = F.mse_loss(vae.decode(z).sample, x)
        kl = post.kl().mean() / post.mean[0].numel()  # kl() sums over latent elements
        return mse + cfg.kl_weight * kl, {"mse": mse.item(), "kl": kl.item()}

    fingerprint = {"kind": "vae", "cfg": asdict(cfg), "seed": seed, "data": tensor_digest(images)}
    _train(vae, loss_fn, steps=cfg.steps, lr=cfg.lr, warmup=cfg.warmup_steps, weight_decay=0.0, gen=gen,
           fingerprint=fingerprint, ema_decay=None, checkpoint_path=checkpoint_path,
           checkpoint_every=checkpoint_every, on_step=on_step, desc="vae", progress=progress)
    return vae, set_scaling_factor(vae, images, device=device)


@torch.no_grad()
def reconstruction_mse(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 256, device="cpu") -> float:
    """Mean squared error, in the model range [-1, 1], of decoding the posterior means of uint8 images."""
    total = 0.0
    for i in range(0, len(images), batch_size):
        x = to_model_range(images[i:i + batch_size].to(device))
        total += F.mse_loss(vae.decode(vae.encode(x).latent_dist.mean).sample, x, reduction="sum").item()
    return total / images.numel()


# ----------------------------------------------------------------------------- DiT


def build_dit(cfg: DiTConfig, channels: int, size: int, num_classes: int, seed: int = 0) -> DiTTransformer2DModel:
    """Learned-variance (out_channels = 2 * channels) class-conditional DiT; null label = num_classes."""
    return _build(DiTTransformer2DModel, seed, sample_size=size, in_channels=channels, out_channels=2 * channels,
                  patch_size=cfg.patch_size, num_layers=cfg.num_layers,
                  num_attention_heads=cfg.num_attention_heads, attention_head_dim=cfg.attention_head_dim,
                  num_embeds_ada_norm=num_classes, norm_type="ada_norm_zero", activation_fn=cfg.activation_fn)


def _set_label_dropout(model: DiTTransformer2DModel, p: float) -> None:
    for block in model.transformer_blocks:
        block.norm1.emb.class_embedder.dropout_prob = p


def train_dit(latents_mean: torch.Tensor, latents_std: torch.Tensor, labels: torch.Tensor, num_classes: int,
              cfg: DiTConfig, seed: int, on_step: OnStep | None = None, *, checkpoint_path=None,
              checkpoint_every: int = 250, device="cpu", progress: bool = True) -> DiTTransformer2DModel:
    """Train on scaled posteriors (N, c, s, s) with generator-space labels (N,); returns the EMA model (eval).

    Each step draws a fresh z0 = mean + std * eps, t ~ U{0..999} and the hybrid loss of improved DDPM.
    """
    n, c, s, _ = latents_mean.shape
    labels = labels.long()
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    model = build_dit(cfg, c, s, num_classes, seed).to(device)
    # diffusers' LabelEmbedding would drop labels in train mode on its own, independently in every block
    # (each block embeds the label again): switch that off and drop each sample's label once below.
    default_p = model.transformer_blocks[0].norm1.emb.class_embedder.dropout_prob
    _set_label_dropout(model, 0.0)
    # One conditioning embedder for every block, as the reference DiT (diffusers keeps a copy per block):
    # fine-tuning ties them to block 0's, so the saved copies must be identical.
    emb0 = model.transformer_blocks[0].norm1.emb
    for block in model.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(emb0.state_dict())
    tie_embedders(model)
    if cfg.precision == "bf16":
        use_fp32_attention(model)  # bf16 matmuls, the attention product in fp32: 2.2x a step on the CPU
    sched = make_scheduler()
    gen = torch.Generator().manual_seed(seed)

    def loss_fn():
        idx = torch.randint(n, (cfg.batch_size,), generator=gen)
        z0 = latents_mean[idx] + latents_std[idx] * torch.randn(latents_mean[idx].shape, generator=gen)  # (B, c, s, s)
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        y = torch.where(torch.rand(cfg.batch_size, generator=gen) < cfg.label_dropout, num_classes, labels[idx])
        z0, t, noise, y = z0.to(device), t.to(device), noise.to(device), y.to(device)
        z_t = sched.add_noise(z0, noise, t)
        with dit_autocast(z_t.device, cfg.precision):
            out = model(z_t, timestep=t, class_labels=y).sample  # (B, 2c, s, s): eps | variance
        return diffusion_loss(out.float(), z0, z_t, t, noise, sched)

    fingerprint = {"kind": "dit", "cfg": asdict(cfg), "seed": seed, "num_classes": num_classes,
                   "data": tensor_digest(latents_mean, latents_std, labels)}
    ema = _train(model, loss_fn, steps=cfg.steps, lr=cfg.lr, warmup=cfg.warmup_steps,
                 weight_decay=cfg.weight_decay, gen=gen, fingerprint=fingerprint, ema_decay=cfg.ema_decay,
                 checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every, on_step=on_step, desc="dit",
                 progress=progress)
    untie_embedders(ema)  # identical copies again, so save_pretrained writes a plain diffusers model
    default_attention(ema)  # and samples as a loaded one does
    _set_label_dropout(ema, default_p)  # as from_pretrained builds it (only active in train mode)
    return ema
