"""Fine-tune a pretrained DiT with DiffFit and the two class memories (arXiv 2505.19469, eq. 6).

Per step (batch of B cached training images, true generator-space labels y):

    z0 = mean + std * e                 fresh draw from the cached VAE posterior (of the flip, p = 0.5)
    z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps,  t ~ U{0..T-1}          (eq. 1)
    out = DiT(z_t, t, y with CFG dropout -> null label)                    (B, 2C, h, w): eps, variance
    L = L_diff(out) + sum_c (lambda_r L_r,c + lambda_g L_g,c) / #classes  (eqs. 2, 4-6; memories by true y)
    AdamW step on the DiffFit set, EMA of that set, then memories += z0 (real), detached z0_hat (gen).

Reproducibility: every random draw comes from generators derived from ``seed`` (epoch permutations
are a pure function of (seed, epoch), so a position in training is just the step count). A checkpoint
holds trainable and EMA parameters, the optimizer, both memories and every generator state, written
atomically as a directory ``step-XXXXXXXX`` (``io.save_checkpoint``: tensors in safetensors, the rest
as JSON, nothing unpickled; what it holds: method/state.py); ``finetune`` resumes from the newest one, and a
run killed anywhere ends bit-identical (on CPU) to an uninterrupted one.

    cache = latent_cache(vae, train.images, "results/.../latents.safetensors")
    model, summary = finetune(dit, cache, labels_gen, dit.config.num_embeds_ada_norm,
                              DDPMScheduler(1000, beta_schedule="linear"), cfg, seed, ckpt_dir)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ..generator.embedders import tie_embedders, untie_embedders
from ..generator.objective import diffusion_loss, predict_x0
from ..io import Resumable
from ..runtime.device import dit_autocast
from ..runtime.finite import require_finite
from .difffit import count_trainable, fold_difffit
from .losses import WEIGHTINGS, memory_loss
from .memory import EVICTIONS, Memory, load_evictions
from .state import TrainState, derive, epoch_order, identity

# ----------------------------------------------------------------------------- config


@dataclass
class FinetuneConfig:
    epochs: int = 8  # passes over the subset's training images (paper: 8)
    batch_size: int = 8  # images per step (paper: 8); an epoch's partial last batch is dropped, as DiT's
    lr: float = 1e-3  # AdamW learning rate (paper: 1e-3)
    weight_decay: float = 0.0  # AdamW weight decay (paper: 0)
    ema_decay: float = 0.9999  # EMA of the trainable set, sampled from (paper 0.9999; short demo runs need less)
    label_dropout: float = 0.1  # P(a sample's label -> null label), classifier-free-guidance training as DiT
    lambda_real: float = 0.002  # lambda_r of eq. (6): weight of the representativeness term L_r
    lambda_gen: float = 0.008  # lambda_g of eq. (6): weight of the diversity term L_g
    memory_size: int = 64  # K: latents per class in each memory
    memory_weighting: str = "eq6"  # "eq6": the paper's equation; "paper_code": its code's accumulation (losses.py)
    real_evict: str = "max"  # real-memory eviction: fifo | max | min | random ("ours": max, Minimax: fifo)
    gen_evict: str = "max"  # generative-memory eviction, same choices
    difffit_blocks: int | None = None  # blocks with DiffFit scale factors; None: the first half (14 of 28)
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end); needs a checkpoint_dir
    max_steps: int | None = None  # stop after this many steps (demo, tests); the step sequence is unchanged
    flip: bool = True  # horizontal-flip augmentation, p = 0.5, from the cached latents of the flipped images
    log_every: int = 50  # steps between memory-similarity entries in the step log (also at the last step)
    evictions: dict = field(default_factory=dict)  # eviction rules of one's own: {name: "module:function"}

    def __post_init__(self):
        load_evictions(self.evictions)  # memory.py's registry: a rule of one's own by name
        for name in ("real_evict", "gen_evict"):
            if getattr(self, name) not in EVICTIONS:
                raise ValueError(f"{name} must be one of {', '.join(EVICTIONS)}, got {getattr(self, name)!r}")
        if self.memory_weighting not in WEIGHTINGS:
            raise ValueError(f"memory_weighting must be one of {WEIGHTINGS}, got {self.memory_weighting!r}")
        if min(self.epochs, self.batch_size, self.memory_size, self.log_every) < 1 or self.checkpoint_every < 0:
            raise ValueError("epochs, batch_size, memory_size and log_every must be >= 1, checkpoint_every >= 0")
        if not 0 <= self.label_dropout <= 1 or not 0 <= self.ema_decay <= 1:
            raise ValueError("label_dropout and ema_decay must lie in [0, 1]")


# Fields that may change between a run and its resumption without changing what a step computes.
_VOLATILE = ("checkpoint_every", "max_steps", "log_every")


# ----------------------------------------------------------------------------- latents

# A cache (generator/latents.py latent_cache) is {"mean", "std"} (N, c, h, w) scaled posterior of every training image, plus
# {"mean_flip", "std_flip"} for its horizontal flip. The VAE is not flip-equivariant, so the flip is
# encoded from flipped pixels rather than by flipping latents. A callable (idx (B,), flip (B,) bool,
# generator) -> z0 (B, c, h, w) may stand in for a cache (the benchmark's encode-every-step path).
LatentSource = dict[str, torch.Tensor] | Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def draw_latents(cache: LatentSource, idx: torch.Tensor, flip: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """z0 = mean + std * e (B, c, h, w) from the cached posteriors of images idx (B,), flipped where flip."""
    if callable(cache):
        return cache(idx, flip, g)
    mean, std = cache["mean"][idx], cache["std"][idx]
    if flip.any():
        f = flip.view(-1, 1, 1, 1)
        mean, std = torch.where(f, cache["mean_flip"][idx], mean), torch.where(f, cache["std_flip"][idx], std)
    return mean + std * torch.randn(mean.shape, generator=g)


# ----------------------------------------------------------------------------- fine-tuning


def step_loss(dit, scheduler, z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, y_in: torch.Tensor,
              y: torch.Tensor, real: Memory, gen: Memory, cfg: FinetuneConfig, local_of: dict | None = None):
    """One step's objective, eq. (6): (loss, L_diff, logs, z0_hat (B, C, h, w)).

    z0 (B, C, h, w) clean latents, t (B,) timesteps, noise like z0, y_in (B,) the labels the DiT sees
    (dropped to the null label for guidance training), y (B,) the true labels keying the memories."""
    z_t = scheduler.add_noise(z0, noise, t)  # eq. (1)
    with dit_autocast(z0.device):
        out = dit(z_t, timestep=t, class_labels=y_in).sample.float()  # (B, 2C, h, w)
    l_diff, d = diffusion_loss(out, z0, z_t, t, noise, scheduler)
    z0_hat = predict_x0(z_t, out[:, :z0.shape[1]], t, scheduler.alphas_cumprod)  # (B, C, h, w), grads through eps
    l_mem, m = memory_loss(z0_hat, y, real, gen, cfg.lambda_real, cfg.lambda_gen, cfg.memory_weighting, local_of)
    return l_diff + l_mem, l_diff, {**d, **m}, z0_hat


def finetune(
    dit,
    cache: LatentSource,
    labels_gen: torch.Tensor,  # (N,) label of each cached image in the DiT's label space
    null_label: int,  # the unconditional label (num_embeds_ada_norm; 1000 for DiT-XL/2)
    scheduler,  # diffusers DDPMScheduler (linear, 1000 steps)
    cfg: FinetuneConfig,
    seed: int,
    checkpoint_dir=None,
    on_step: Callable[[dict], None] | None = None,
    progress: bool = True,
    class_order: list[int] | None = None,
):
    """Fine-tune ``dit`` (modified in place) and return (EMA model with DiffFit folded, summary).

    The returned model is ``dit`` itself holding the EMA weights: a plain DiTTransformer2DModel in eval
    mode, ``save_pretrained``-able. ``class_order``: the dataset's generator labels in its class order,
    whose positions the reference code uses as labels (only ``memory_weighting="paper_code"`` depends on
    it). ``on_step`` receives each step's log after that step's checkpoint:
    step (steps done), epoch, loss (eq. 6), loss_diff = mse + vb, loss_real / loss_gen (unweighted L_r,
    L_g averaged over the batch's classes; 0 while memories are empty) and, every ``cfg.log_every``
    steps and at the last, sim_real / sim_gen (the memories' mean pairwise cosine similarity).
    With ``checkpoint_dir``, checkpoints go to a folder keyed by the configuration, seed, data and
    starting weights (``io.Checkpoints``): the newest one of the same run is resumed, another
    configuration's is left alone. They are written every ``cfg.checkpoint_every`` steps and at the
    end (the final one makes a rerun of a finished configuration return at once).
    """
    t_start = time.perf_counter()
    labels_gen = torch.as_tensor(labels_gen, dtype=torch.long).cpu().contiguous()
    # the dataset's classes in order (generator labels): their positions are the reference code's labels
    local_of = None if class_order is None else {int(c): i for i, c in enumerate(class_order)}
    n, bs = len(labels_gen), cfg.batch_size
    steps_per_epoch, total = _check_inputs(dit, cache, labels_gen, null_label, cfg)
    device = next(dit.parameters()).device

    tie_embedders(dit)
    state = TrainState.build(dit, cfg, seed)
    trainable_count = count_trainable(dit)
    run = Resumable(checkpoint_dir, identity(cfg, _VOLATILE, seed, labels_gen, null_label, list(state.params), dit,
                                             cache, class_order) if checkpoint_dir is not None else {},
                    cfg.checkpoint_every, total, keep_final=True)
    held: dict = {}

    def restore(ck: dict) -> None:
        state.resume(ck, device)
        held.update(ck)

    start = run.start(restore)
    resumed, last = (held["step"], held["last_log"]) if held else (None, {})
    if not held:
        torch.manual_seed(derive(seed, "torch"))  # only dropout inside the DiT (if configured) draws from it

    dit.train()  # LabelEmbedding dropout is off (tie_embedders); labels are dropped below, once per sample
    order_epoch, order = -1, None
    for step in tqdm(range(start, total), initial=start, total=total, disable=not progress, desc="finetune"):
        epoch, pos = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order_epoch, order = epoch, epoch_order(seed, epoch, n)  # (N,)
        z0, t, noise, drop, y = _batch(cache, labels_gen, order[pos * bs:(pos + 1) * bs], cfg, state.g,
                                       scheduler.config.num_train_timesteps, device)
        loss, l_diff, logs, z0_hat = step_loss(dit, scheduler, z0, t, noise, torch.where(drop, null_label, y), y,
                                               state.real, state.gen, cfg, local_of)
        require_finite(loss, step)
        state.update(loss, z0, z0_hat, y)

        done = step + 1
        last = {"step": done, "epoch": epoch, "loss": loss.item(), "loss_diff": l_diff.item(), **logs}
        if done % cfg.log_every == 0 or done == total:
            last |= {"sim_real": state.real.mean_pairwise_similarity(), "sim_gen": state.gen.mean_pairwise_similarity()}
        run.step_done(done, lambda: state.checkpoint(done, steps_per_epoch, last))
        if on_step is not None:
            on_step(dict(last))

    if start == total and resumed is None:  # nothing to train (max_steps=0): the final checkpoint still
        run.step_done(total, lambda: state.checkpoint(total, steps_per_epoch, last))
    return _finish(dit, state, {"steps": total, "steps_per_epoch": steps_per_epoch, "resumed_from": resumed,
                                "final": last}, trainable_count, t_start)


def _finish(dit, state: TrainState, run: dict, trainable_count: dict, t_start: float):
    """``dit`` with the EMA weights, DiffFit folded and embedders untied (a plain diffusers model), and the
    run's summary (``run`` plus the memories' similarities and sizes)."""
    state.use_ema()
    fold_difffit(dit)
    untie_embedders(dit)
    dit.eval().requires_grad_(False)
    sizes = lambda mem: {c: len(mem.get(c)) for c in mem.classes()}  # noqa: E731
    summary = {
        **run, "sim_real": state.real.mean_pairwise_similarity(), "sim_gen": state.gen.mean_pairwise_similarity(),
        "memory_sizes": {"real": sizes(state.real), "gen": sizes(state.gen)}, "trainable": trainable_count,
        "seconds": time.perf_counter() - t_start,
    }
    return dit, summary


def _check_inputs(dit, cache: LatentSource, labels_gen: torch.Tensor, null_label: int, cfg: FinetuneConfig
                  ) -> tuple[int, int]:
    """(steps per epoch, total steps), or ValueError naming what does not fit the DiT or the cache."""
    n, bs = len(labels_gen), cfg.batch_size
    steps_per_epoch = n // bs
    if steps_per_epoch == 0:
        raise ValueError(f"{n} training images give no full batch of {bs}")
    total = cfg.epochs * steps_per_epoch
    total = total if cfg.max_steps is None else min(total, cfg.max_steps)
    rows = dit.config.num_embeds_ada_norm + 1  # class table rows: labels 0..num_embeds-1, then the null label
    if not (0 <= int(labels_gen.min()) and int(labels_gen.max()) < rows and 0 <= null_label < rows):
        raise ValueError(f"labels must index the DiT's class table of {rows} rows (generator-space labels)")
    if cfg.flip and not callable(cache) and "mean_flip" not in cache:
        raise ValueError("cfg.flip needs a cache made with flip=True")
    return steps_per_epoch, total


def _batch(cache: LatentSource, labels_gen: torch.Tensor, idx: torch.Tensor, cfg: FinetuneConfig,
           g: torch.Generator, T: int, device):
    """One step's draws from ``g``, in this order: flips, the posterior draw z0 (B, C, h, w), timesteps t
    (B,), noise like z0, label-dropout mask (B,); and the true labels y (B,) of images ``idx`` (B,)."""
    bs = len(idx)
    flip = torch.rand(bs, generator=g) < 0.5 if cfg.flip else torch.zeros(bs, dtype=torch.bool)
    z0 = draw_latents(cache, idx, flip, g).to(device)  # (B, C, h, w)
    t = torch.randint(0, T, (bs,), generator=g).to(device)  # (B,)
    noise = torch.randn(z0.shape, generator=g).to(device)  # (B, C, h, w)
    drop = (torch.rand(bs, generator=g) < cfg.label_dropout).to(device)  # (B,)
    return z0, t, noise, drop, labels_gen[idx].to(device)  # y: the true labels key the memories
