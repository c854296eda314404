"""Distribution Matching (DM; Zhao & Bilen, WACV 2023): synthesise images by matching
mean embeddings of randomly initialised networks.

The synthetic set (``ipc`` images per class) starts as real images and is optimised
as float tensors in the network's input space (normalised pixels). Every iteration
draws a *fresh* randomly initialised ConvNet, frozen; for each class it embeds a
batch of real images and the class's synthetic images (features before the
classifier), both through the *same* differentiable siamese augmentation (DSA, Zhao
& Bilen ICML 2021), and adds ||mean_real - mean_syn||^2 to the loss. SGD with
momentum 0.5 on the pixels, as DM's code.

DM optimises a set jointly, so unlike the selections its IPC-10 set is not a prefix
of its IPC-50 set: run it once per IPC.

Determinism: every random draw (initial images, network seeds, real batches,
augmentation) comes from one ``torch.Generator`` seeded with ``seed``; network
initialisation runs under ``torch.random.fork_rng`` with a seed drawn from it, so the
caller's global RNG is untouched. On CPU the same seed and thread count give
bit-identical images.

    res = distill_dm(train, DMConfig(ipc=10, iterations=1000), seed=0)
    res.images  # (K*10, C, H, W) uint8, class-major
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.augment import AugmentConfig, normalize
from ..data.datasets import ImageSet
from ..evaluate.nets import build_net
from .features import penultimate
from .select import random_order

IDENTITY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")  # DSA's strategy, in its order


@dataclass
class DSAConfig:
    """Differentiable siamese augmentation; defaults are DSA's ``ParamDiffAug``."""

    flip: float = 0.5  # probability of a horizontal flip
    scale: float = 1.2  # x and y scale factors ~ U[1/s, s], independently
    rotate: float = 15.0  # rotation ~ U[-r, r] degrees
    crop: float = 0.125  # translation ~ U[-c, c] of the side, zero padding (DSA's crop-with-pad)
    cutout: float = 0.5  # side of the zeroed square, as a fraction of the image side
    brightness: float = 1.0  # x + U[-b/2, b/2]
    saturation: float = 2.0  # (x - channel mean) * U[0, s] + channel mean
    contrast: float = 0.5  # (x - image mean) * U[c, c + 1] + image mean
    single: bool = True  # one family per draw, chosen uniformly (DSA's aug_mode 'S', which DM uses);
    # False: all families, the geometric ones composed into one warp, cutout last


def draw_siamese(cfg: DSAConfig, g: torch.Generator) -> dict:
    """One augmentation draw, shared by every image of the real and the synthetic batch:
    {'families', 'brightness', 'saturation', 'contrast', 'theta' (2, 3), 'cutout' (cx, cy) in [0, 1)}."""
    u = torch.rand(12, generator=g, dtype=torch.float64).tolist()
    fams = {FAMILIES[min(int(u[0] * len(FAMILIES)), len(FAMILIES) - 1)]} if cfg.single else set(FAMILIES)
    p = {"families": fams}
    p["brightness"] = (u[1] - 0.5) * cfg.brightness
    p["saturation"] = u[2] * cfg.saturation
    p["contrast"] = u[3] + cfg.contrast
    # output -> input coordinates; the transform applied first is the leftmost factor
    theta = torch.eye(3, dtype=torch.float64)
    if "crop" in fams:
        t = torch.eye(3, dtype=torch.float64)
        t[0, 2], t[1, 2] = 2 * cfg.crop * (2 * u[4] - 1), 2 * cfg.crop * (2 * u[5] - 1)  # [-1, 1] spans 2
        theta = theta @ t
    if "flip" in fams and u[6] < cfg.flip:
        theta = theta @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    if "scale" in fams:
        lo = 1 / cfg.scale
        theta = theta @ torch.diag(torch.tensor([lo + (cfg.scale - lo) * u[7], lo + (cfg.scale - lo) * u[8], 1.0],
                                                dtype=torch.float64))
    if "rotate" in fams:
        a = math.radians((2 * u[9] - 1) * cfg.rotate)
        r = torch.eye(3, dtype=torch.float64)
        r[:2, :2] = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        theta = theta @ r
    p["theta"] = theta[:2].float()
    p["cutout"] = (u[10], u[11])
    return p


def apply_siamese(x: torch.Tensor, p: dict, cfg: DSAConfig) -> torch.Tensor:
    """(N, C, H, W) float in input space -> augmented, same shape; differentiable w.r.t. x."""
    n, c, h, w = x.shape
    fams = p["families"]
    if "color" in fams:
        x = x + p["brightness"]
        m = x.mean(1, keepdim=True)  # a no-op for one channel: nothing to saturate
        x = (x - m) * p["saturation"] + m
        m = x.mean((1, 2, 3), keepdim=True)
        x = (x - m) * p["contrast"] + m
    # a flip draw that does not flip leaves theta the identity: skip the (nearly exact) resampling
    if fams & {"crop", "flip", "scale", "rotate"} and not torch.equal(p["theta"], IDENTITY):
        theta = p["theta"].to(x.device).expand(n, 2, 3)
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if "cutout" in fams:
        # DSA's cutout: a (sh, sw) square of zeros, its centre uniform over the pixels
        sh, sw = int(h * cfg.cutout + 0.5), int(w * cfg.cutout + 0.5)
        top = int(p["cutout"][1] * (h + 1 - sh % 2)) - sh // 2
        left = int(p["cutout"][0] * (w + 1 - sw % 2)) - sw // 2
        ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        keep = ~(((ys >= top) & (ys < top + sh))[:, None] & ((xs >= left) & (xs < left + sw))[None, :])  # (H, W)
        x = x * keep.to(x.dtype)
    return x


@dataclass
class DMConfig:
    ipc: int  # synthetic images per class
    iterations: int = 20000  # DM's schedule
    lr_img: float = 1.0  # SGD lr on the pixels (normalised space), DM's value for ConvNet
    momentum: float = 0.5  # DM's value
    batch_real: int = 256  # real images per class per iteration (all of them when the class is smaller)
    net: str = "convnet"  # embedding network, re-initialised every iteration
    width: int = 128
    depth: int = 3
    dsa: DSAConfig = field(default_factory=DSAConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # only its mean/std: the input space

    def __post_init__(self):
        if isinstance(self.dsa, dict):
            self.dsa = DSAConfig(**self.dsa)
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if self.ipc < 1 or self.iterations < 0:
            raise ValueError(f"need ipc >= 1 and iterations >= 0, got ipc={self.ipc}, iterations={self.iterations}")


@dataclass
class DMResult:
    images: torch.Tensor  # (K*ipc, C, H, W) uint8, class-major
    labels: torch.Tensor  # (K*ipc,) int64
    losses: list[float]  # matching loss (summed over classes) at each iteration, before its step
    init_index: torch.Tensor  # training indices the synthetic images started from


def _stats(c: int, cfg: AugmentConfig, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) mean and std of the input space, read off ``normalize`` (with its defaults):
    normalize(0) = -m/s and normalize(1) - normalize(0) = 1/s."""
    n0 = normalize(torch.zeros(1, c, 1, 1, device=device), cfg)
    std = 1 / (normalize(torch.ones(1, c, 1, 1, device=device), cfg) - n0)
    return -n0 * std, std


def to_uint8(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Normalised float (N, C, H, W) -> uint8 pixels (de-normalised, clamped, rounded)."""
    mean, std = _stats(x.shape[1], cfg, x.device)
    return (x * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)


def distill_dm(train: ImageSet, cfg: DMConfig, seed: int, init_index: torch.Tensor | None = None, device="cpu",
               on_step: Callable[[int, float], None] | None = None, progress: bool = False) -> DMResult:
    """DM synthetic set of ``cfg.ipc`` images per class from uint8 training images.

    ``init_index``: class-major training indices to start from (``cfg.ipc`` per class); default
    ``random_order(train.labels, ipc, seed)``, i.e. the random baseline's picks.
    ``on_step(iteration, loss)`` is called after every iteration (1-based).
    """
    device = torch.device(device)
    if init_index is None:
        init_index = random_order(train.labels, cfg.ipc, seed)
    classes = train.labels.unique(sorted=True).tolist()
    init_labels = train.labels[init_index]
    if init_labels.tolist() != [c for c in classes for _ in range(cfg.ipc)]:
        raise ValueError(f"init_index must hold {cfg.ipc} indices per class, class-major")
    _, ch, h, w = train.images.shape
    g = torch.Generator().manual_seed(seed)  # CPU: every draw, whatever the device
    pools = [torch.nonzero(train.labels == c).flatten() for c in classes]
    real = train.images.to(device)

    def inputs(u8):  # uint8 -> normalised float, the space the synthetic pixels live in
        return normalize(u8.float().div(255), cfg.augment)

    syn = inputs(real[init_index.to(device)]).clone().requires_grad_(True)  # (K*ipc, C, H, W)
    opt = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=cfg.momentum)
    losses = []
    bar = tqdm(range(1, cfg.iterations + 1), desc="dm", file=sys.stderr, disable=not progress, leave=False)
    for it in bar:
        with torch.random.fork_rng(devices=[]):  # a fresh random network, seeded from g
            torch.manual_seed(int(torch.randint(2 ** 62, (1,), generator=g)))
            net = build_net(cfg.net, len(classes), ch, h, cfg.width, cfg.depth if cfg.net == "convnet" else None)
        net = net.to(device).eval().requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for k, pool in enumerate(pools):
            pick = pool[torch.randperm(len(pool), generator=g)[:cfg.batch_real]]
            p = draw_siamese(cfg.dsa, g)  # the same draw for both batches
            with torch.no_grad():
                emb_real = penultimate(net, apply_siamese(inputs(real[pick.to(device)]), p, cfg.dsa))  # (B, D)
            emb_syn = penultimate(net, apply_siamese(syn[k * cfg.ipc:(k + 1) * cfg.ipc], p, cfg.dsa))  # (ipc, D)
            loss = (emb_real.mean(0) - emb_syn.mean(0)).pow(2).sum()
            loss.backward()  # per class: gradients add up to the summed loss's, memory stays one class's
            total += loss.item()
        if not math.isfinite(total):  # a nan/inf loss stops the job before nan pixels become black images
            raise FloatingPointError(f"DM matching loss is {total} at iteration {it} (lr_img may be too large)")
        opt.step()
        losses.append(total)
        if on_step is not None:
            on_step(it, total)
        bar.set_postfix(loss=f"{total:.3f}")
    bar.close()

    images = to_uint8(syn.detach(), cfg.augment).cpu()
    return DMResult(images, init_labels.clone(), losses, init_index)


def synthesize(train: ImageSet, ipc: int, seed: int, settings: dict, device="cpu",
               log: Callable[[int, dict], None] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The synthesis contract (experiment/methods.py) for DM: ``settings`` is params.yaml's
    ``synthesis.dm`` with the evaluation protocol's ``augment`` (its normalisation is the pixels' space).
    -> (uint8 images, labels, metadata: the initial picks, the DSA draw settings, the matching loss)."""
    cfg = DMConfig(ipc=ipc, iterations=settings["iterations"], lr_img=settings["lr_img"],
                   momentum=settings["momentum"], batch_real=settings["batch_real"], net=settings["model"],
                   width=settings["width"], depth=settings["depth"], dsa=DSAConfig(),
                   augment=AugmentConfig(**settings["augment"]))
    res = distill_dm(train, cfg, seed, device=device, progress=True,
                     on_step=None if log is None else (lambda it, loss: log(it, {"loss_match": loss})))
    first_last = {"loss_match_first": res.losses[0], "loss_match_last": res.losses[-1]} if res.losses else {}
    return res.images, res.labels, {"init_index": res.init_index.tolist(), "dsa": dataclasses.asdict(cfg.dsa),
                                    **first_last}
