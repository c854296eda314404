"""A researcher's own method of each kind, outside the package (tests/test_extending.py, README
"Extending"): a selection rule, a synthesis method and a sampler, each one function with its
contract's signature (experiment/methods.py, generator/samplers.py)."""

import torch

from divdistill.generator.sample import sample_latents


def brightest(train, max_ipc, seed, features=None):
    """Selection: per class the ``max_ipc`` brightest images (mean pixel, ties by index), class-major."""
    picks = []
    for c in train.labels.unique(sorted=True).tolist():
        pool = torch.nonzero(train.labels == c).flatten()
        brightness = train.images[pool].float().mean(dim=(1, 2, 3))
        order = torch.argsort(-brightness, stable=True)
        picks.append(pool[order[:max_ipc]])
    return torch.cat(picks)


def pooled_means(train, ipc, seed, settings, device="cpu", log=None):
    """Synthesis: each image the pixel mean of ``settings["pool"]`` random real images of its class."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for c in train.labels.unique(sorted=True).tolist():
        pool = torch.nonzero(train.labels == c).flatten()
        for _ in range(ipc):
            pick = pool[torch.randperm(len(pool), generator=g)[:settings["pool"]]]
            images.append(train.images[pick].float().mean(0).round().to(torch.uint8))
            labels.append(c)
    if log is not None:
        log(1, {"pool": float(settings["pool"])})
    return torch.stack(images), torch.tensor(labels), {"pool": settings["pool"]}


def weak_guidance(dit, labels, *, index, seed, ipc, real=None, factor=0.5, **settings):
    """Sampler: DiT's DDPM with the classifier-free guidance scale times ``factor`` (at least 1)."""
    settings["guidance"] = max(1.0, settings["guidance"] * factor)
    return sample_latents(dit, labels, index=index, seed=seed, **settings)
