"""Training augmentation and test transform of the IDC protocol, on whole batches.

Training (IDC's ImageNet pipeline): RandomResizedCrop(scale, ratio 3/4..4/3) ->
horizontal flip -> ColorJitter(brightness, contrast, saturation) -> PCA lighting ->
normalise, then CutMix on every batch (done by the trainer, which needs the labels).

Everything works on the tensor's device without per-image Python loops: crop and
flip are one affine warp per image, applied to the batch by a single
``F.affine_grid`` / ``F.grid_sample`` (bilinear). The crop box is continuous
rather than snapped to whole pixels, and the warp does not antialias (a 256 px
crop area shrunk to 224 px is a mild 1.14x). All randomness comes from the
``torch.Generator`` passed in (a CPU generator for CPU tensors, a CUDA one for
CUDA tensors), so the same seed gives the same batch.

One-channel images (the Fashion-MNIST demo): saturation is a no-op (there is no
colour to saturate), PCA lighting is skipped (its eigenvectors are ImageNet's RGB
colour statistics), and the default normalisation is mean 0.5 / std 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.special import betaincinv

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = (0.5,), (0.5,)
# AlexNet PCA lighting: eigenvalues / eigenvectors (columns) of ImageNet's RGB covariance
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))
LUMA = (0.2989, 0.587, 0.114)  # grayscale weights, as torchvision's rgb_to_grayscale
RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop aspect-ratio range
CROP_TRIES = 10  # RandomResizedCrop's rejection-sampling attempts before falling back to the whole image


@dataclass
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.5, 1.0)  # RandomResizedCrop area fraction range (aspect 3/4..4/3)
    flip: bool = True  # horizontal flip with probability 1/2
    color_jitter: float = 0.4  # brightness/contrast/saturation factors ~ U[1-j, 1+j], random order; 0 disables
    lighting: float = 0.1  # std of the AlexNet PCA lighting noise (3-channel images only); 0 disables
    mean: tuple[float, ...] | None = None  # normalisation mean; None: ImageNet's for 3 channels, 0.5 for 1
    std: tuple[float, ...] | None = None  # normalisation std; None: ImageNet's for 3 channels, 0.5 for 1
    cutmix_beta: float = 1.0  # CutMix on every training batch, lam ~ Beta(b, b); 0 disables

    def __post_init__(self):
        self.crop_scale = tuple(float(s) for s in self.crop_scale)
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")


def _rand(g: torch.Generator, *shape) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=g.device)


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


def normalize(x: torch.Tensor, cfg: AugmentConfig | None = None) -> torch.Tensor:
    """(N, C, H, W) float in [0, 1] -> (x - mean) / std."""
    c = x.shape[1]
    cfg = cfg or AugmentConfig()
    mean = cfg.mean or (IMAGENET_MEAN if c == 3 else GRAY_MEAN * c)
    std = cfg.std or (IMAGENET_STD if c == 3 else GRAY_STD * c)
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries for {c}-channel images")
    mean = torch.tensor(mean, device=x.device).view(1, c, 1, 1)
    std = torch.tensor(std, device=x.device).view(1, c, 1, 1)
    return (x - mean) / std


def _crop_flip_theta(n: int, h: int, w: int, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """(N, 2, 3) affine maps from output to input coordinates (align_corners=False convention):
    a RandomResizedCrop box, mirrored with probability 1/2."""
    lo, hi = cfg.crop_scale
    area = lo + (hi - lo) * _rand(g, n, CROP_TRIES)  # (N, T) fraction of the image area
    log_r = math.log(RATIO[0]) + math.log(RATIO[1] / RATIO[0]) * _rand(g, n, CROP_TRIES)
    r = log_r.exp()  # crop width / height in pixels
    sw, sh = (area * r * h / w).sqrt(), (area / r * w / h).sqrt()  # crop side / image side
    ok = (sw <= 1) & (sh <= 1)
    first = ok.float().argmax(1, keepdim=True)  # first accepted try, as torchvision's rejection loop
    found = ok.any(1)
    # no try fits: the whole image (torchvision's fallback for square images)
    sw = torch.where(found, sw.gather(1, first).squeeze(1), 1.0)
    sh = torch.where(found, sh.gather(1, first).squeeze(1), 1.0)
    u = _rand(g, n, 3)
    cx, cy = (1 - sw) * (2 * u[:, 0] - 1), (1 - sh) * (2 * u[:, 1] - 1)  # box centre, box inside the image
    flip = torch.where(u[:, 2] < 0.5, -1.0, 1.0) if cfg.flip else torch.ones_like(sw)
    zero = torch.zeros_like(sw)
    return torch.stack([torch.stack([sw * flip, zero, cx], 1), torch.stack([zero, sh, cy], 1)], 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W) luminance."""
    if x.shape[1] == 1:
        return x
    return (x * torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


def color_jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation with factors ~ U[1-s, 1+s], each image in its own
    random order (as torchvision's ColorJitter); x in [0, 1], clamped after each step."""
    n = x.shape[0]
    fac = (1 + strength * (2 * _rand(g, n, 3) - 1)).to(x.device).view(n, 3, 1, 1, 1)
    order = _rand(g, n, 3).argsort(1).to(x.device).view(n, 3, 1, 1, 1)

    def brightness(x, f):
        return x * f

    def contrast(x, f):
        m = _gray(x).mean((1, 2, 3), keepdim=True)
        return (x - m) * f + m

    def saturation(x, f):
        gr = _gray(x)
        return (x - gr) * f + gr  # identity for 1 channel: x == gray

    ops = (brightness, contrast, saturation)
    for step in range(3):  # every op on the whole batch; each image keeps the one its order names
        out = [op(x, fac[:, k]).clamp(0, 1) for k, op in enumerate(ops)]
        sel = order[:, step]
        x = torch.where(sel == 0, out[0], torch.where(sel == 1, out[1], out[2]))
    return x


def lighting(x: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    """AlexNet PCA lighting: add eigvec @ (alpha * eigval), alpha ~ N(0, std^2), per image.
    Only defined for RGB; other channel counts are returned unchanged."""
    if x.shape[1] != 3:
        return x
    alpha = torch.randn((x.shape[0], 3), generator=g, device=g.device).to(x.device) * std
    eigval = torch.tensor(PCA_EIGVAL, device=x.device)
    eigvec = torch.tensor(PCA_EIGVEC, device=x.device)
    rgb = (alpha * eigval) @ eigvec.T  # (N, 3)
    return x + rgb.view(-1, 3, 1, 1)


def augment_batch(x: torch.Tensor, out_size: int, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float (N, C, out_size, out_size) on x's device."""
    n, c, h, w = x.shape
    x = _to_unit(x)
    theta = _crop_flip_theta(n, h, w, cfg, generator).to(x.device)
    grid = F.affine_grid(theta, [n, c, out_size, out_size], align_corners=False)
    # border padding: bilinear taps half a pixel outside the image (upscaled crops) repeat the edge
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.color_jitter > 0:
        x = color_jitter(x, cfg.color_jitter, generator)
    if cfg.lighting > 0:
        x = lighting(x, cfg.lighting, generator)
    return normalize(x, cfg)


def test_transform(x: torch.Tensor, out_size: int, cfg: AugmentConfig | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float (N, C, out_size, out_size), deterministic: Minimax's
    ``Resize(size) + CenterCrop(size)`` (MinimaxDiffusion ``data.py`` L302-304, ``size`` = 224):
    the shorter side resized (bilinear, antialiased) to ``out_size`` unless it is already, then the
    centre ``out_size`` square. A stored 256 px image becomes 224 px whole (not Resize(256) +
    CenterCrop(224), which would cut its border); 32 px demo images pass unchanged.
    Normalisation as in training (``cfg.mean/std``, channel defaults when None).
    """
    x = _to_unit(x)
    h, w = x.shape[-2:]
    side = min(h, w)
    if side != out_size:
        h, w = max(out_size, round(h * out_size / side)), max(out_size, round(w * out_size / side))
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=side > out_size, align_corners=False)
    top, left = int(round((h - out_size) / 2.0)), int(round((w - out_size) / 2.0))  # as torchvision's CenterCrop
    return normalize(x[..., top:top + out_size, left:left + out_size], cfg)


def cutmix(x: torch.Tensor, y: torch.Tensor, beta: float, generator: torch.Generator):
    """CutMix (Yun et al. 2019) on a batch: one box, pasted from a permuted partner into every image.

    Returns (x_mixed, y_a, y_b, lam): the loss is lam * CE(y_a) + (1 - lam) * CE(y_b), where lam
    is recomputed from the clipped box, so it is exactly the fraction of each image left unpasted.
    """
    n, _, h, w = x.shape
    u = _rand(generator, 3).tolist()
    lam = float(betaincinv(beta, beta, u[0]))  # Beta(b, b) by inverse CDF: the generator's uniform decides it
    perm = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    cut = math.sqrt(1 - lam)
    cut_w, cut_h = int(w * cut), int(h * cut)
    cx, cy = int(u[1] * w), int(u[2] * h)  # box centre, uniform over pixels
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x = x.clone()
    x[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
    lam = 1 - (x2 - x1) * (y2 - y1) / (w * h)
    return x, y, y[perm], lam


test_transform.__test__ = False  # its name matches pytest's test pattern; keep test modules importing it clean
