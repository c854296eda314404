"""What a fine-tuning run carries from step to step, and every checkpoint holds (method/finetune.py).

    params   the DiffFit set (biases, the tied class table, gammas), deduplicated, in module order
    ema      their exponential moving average (the frozen rest never changes: its EMA is itself)
    opt      AdamW over params
    real     the real-latent memory M_r; gen the generated-latent memory M_g
    g        the step generator: flips, posterior draws, t, noise, label dropout
    ema_decay the EMA's decay

Every random stream is derived from the run's seed (``derive``); epoch permutations are a pure function
of (seed, epoch), so a position in training is just the step count and a checkpoint needs no order.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from ..io import tensor_digest
from .difffit import apply_difffit
from .memory import Memory


def derive(seed: int, name: str) -> int:
    """Independent 63-bit seed for stream ``name`` of run ``seed``."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little") >> 1


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Image order (n,) of one epoch, a pure function of (seed, epoch): resuming needs no state for it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive(seed, f"epoch{epoch}")))


def _rng_state(g: torch.Generator) -> dict:
    state = {"step": g.get_state(), "torch": torch.get_rng_state()}  # torch's: dropout inside the DiT, if any
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(g: torch.Generator, state: dict) -> None:
    g.set_state(state["step"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _memory_to(state: dict, device) -> dict:
    """A Memory state_dict with its latents and similarities moved to ``device`` (generators stay)."""
    move = lambda s: s | {"latents": s["latents"].to(device), "sim": s["sim"].to(device)}  # noqa: E731
    return state | {"classes": {c: move(s) for c, s in state["classes"].items()}}


@dataclass
class TrainState:
    params: dict[str, torch.nn.Parameter]
    ema: dict[str, torch.Tensor]
    opt: torch.optim.Optimizer
    real: Memory
    gen: Memory
    g: torch.Generator
    ema_decay: float

    @classmethod
    def build(cls, dit, cfg, seed: int) -> TrainState:
        """DiffFit on ``dit`` (embedders already tied), AdamW, EMA copies, empty memories, seeded streams."""
        ids = {id(p) for p in apply_difffit(dit, cfg.difffit_blocks)}
        params = {k: p for k, p in dit.named_parameters() if id(p) in ids}  # deduplicated, in module order
        # foreach: one kernel per op over the ~100-1000 small tensors instead of a Python loop (also on CPU)
        opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        ema = {k: p.detach().clone() for k, p in params.items()}
        real = Memory(cfg.memory_size, cfg.real_evict, torch.Generator().manual_seed(derive(seed, "real")))
        gen = Memory(cfg.memory_size, cfg.gen_evict, torch.Generator().manual_seed(derive(seed, "gen")))
        return cls(params, ema, opt, real, gen, torch.Generator().manual_seed(derive(seed, "step")), cfg.ema_decay)

    def __post_init__(self):
        self._ema_lists = list(self.ema.values()), [p.detach() for p in self.params.values()]
        self._ema_update = get_ema_multi_avg_fn(self.ema_decay)

    def update(self, loss: torch.Tensor, z0: torch.Tensor, z0_hat: torch.Tensor, y: torch.Tensor) -> None:
        """One optimiser step on ``loss``, the EMA, then the memories += z0 (real) and detached z0_hat (gen),
        after this step's loss, as the method prescribes."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        # EMA of the trainable set only: frozen parameters never change, so their EMA is themselves.
        # lerp = ema + w (p - ema): exact where p == ema (e.g. class rows that never get a gradient).
        self._ema_update(*self._ema_lists, None)  # torch's EMA: foreach lerp, ema + (1 - decay) (p - ema)
        self.real.update(z0, y)
        self.gen.update(z0_hat.detach(), y)

    def checkpoint(self, step: int, steps_per_epoch: int, last: dict) -> dict:
        return {"step": step, "epoch": step // steps_per_epoch, "position": step % steps_per_epoch,
                "trainable": self.params, "ema": self.ema, "optimizer": self.opt.state_dict(),
                "memory_real": self.real.state_dict(), "memory_gen": self.gen.state_dict(),
                "rng": _rng_state(self.g), "last_log": last}

    def resume(self, ck: dict, device) -> None:
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(ck["trainable"][k])
                self.ema[k].copy_(ck["ema"][k])
        self.opt.load_state_dict(ck["optimizer"])
        self.real.load_state_dict(_memory_to(ck["memory_real"], device))
        self.gen.load_state_dict(_memory_to(ck["memory_gen"], device))
        _set_rng_state(self.g, ck["rng"])

    def use_ema(self) -> None:
        """The model's trainable set takes its EMA weights (what is sampled from)."""
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(self.ema[k])


def identity(cfg, volatile: tuple[str, ...], seed: int, labels: torch.Tensor, null_label: int, names: list[str],
             dit, cache, class_order: list[int] | None) -> dict:
    """What a checkpoint must agree on to be resumed by this call (it keys the checkpoint folder):
    the configuration (less its ``volatile`` fields), the seed, the data (labels and latents) and the
    starting weights."""
    conf = {k: v for k, v in asdict(cfg).items() if k not in volatile and not (k == "evictions" and not v)}
    latents = "callable" if callable(cache) else tensor_digest(*(cache[k] for k in sorted(cache)))
    return {"config": conf, "seed": seed, "n": len(labels), "labels": tensor_digest(labels), "null": null_label,
            "trainable": names, "latents": latents, "weights": tensor_digest(*dit.state_dict().values()),
            "class_order": class_order}
