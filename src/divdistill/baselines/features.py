"""Feature extractor for the feature-based selection baselines (K-Center, Herding).

As in the DC benchmark (Cui et al. 2022), the features are the penultimate
activations of one ConvNet trained on the *full* training set: the flattened
output of the conv stack, just before the linear classifier. Training reuses the
evaluation protocol (``trainer.train_and_test``: same augmentation, CutMix, SGD
schedule), so the only new code here is the embedding and the artefact format.

A saved extractor is a folder, like a diffusers model: ``config.json`` (the
``build_net`` arguments, the normalisation and the training settings) and
``model.safetensors`` (the state dict), written atomically together.

    net = train_feature_net(train, width=32, depth=3, epochs=20, batch_size=64, lr=0.01, seed=0)
    feats = embed(net, train.images, resolution=32)  # (N, D) float32
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.augment import AugmentConfig, test_transform
from ..data.datasets import ImageSet
from ..evaluate.nets import ConvNet, ResNet, build_net
from ..evaluate.trainer import TrainConfig, seed_everything, train_and_test
from ..io import atomic_dir, load_tensors, read_json, save_tensors, write_json

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def penultimate(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) normalised input -> (N, D) features before the classifier."""
    if isinstance(net, ConvNet):
        return net.features(x).flatten(1)  # (N, width, s, s) -> (N, width*s*s)
    if isinstance(net, ResNet):
        return F.adaptive_avg_pool2d(net.layers(net.stem(x)), 1).flatten(1)  # (N, 8w)
    raise TypeError(f"no penultimate features defined for {type(net).__name__}")


def train_feature_net(train: ImageSet, *, net: str = "convnet", width: int = 128, depth: int | None = 3,
                      epochs: int, batch_size: int = 64, lr: float = 0.01, seed: int,
                      resolution: int | None = None, augment: AugmentConfig | None = None, device="cpu",
                      on_epoch: Callable[[int, dict], None] | None = None, progress: bool = False) -> nn.Module:
    """A network trained on every training image with the evaluation protocol's recipe, in eval mode.

    ``resolution`` defaults to the stored side. There is no held-out set here: the final
    "test" pass of ``train_and_test`` runs on the training images, so the accuracy that
    ``on_epoch`` sees at the last epoch is the training fit under the test transform.
    The returned module has ``.config`` (a JSON-able dict) for ``save_feature_net``.
    """
    resolution = resolution or train.images.shape[-1]
    augment = augment or AugmentConfig()
    channels = train.images.shape[1]
    seed_everything(seed)  # the initialisation follows from the seed
    model = build_net(net, train.num_classes, channels, resolution, width, None if net != "convnet" else depth)
    cfg = TrainConfig(epochs=epochs, resolution=resolution, batch_size=batch_size, lr=lr, eval_every=0,
                      augment=augment)
    train_and_test(model, train.images, train.labels, train.images, train.labels, cfg, seed, device,
                   on_epoch=on_epoch, progress=progress)
    model.config = {
        "net": net, "num_classes": train.num_classes, "channels": channels, "resolution": resolution,
        "width": width, "depth": depth if net == "convnet" else None,
        "augment": dataclasses.asdict(augment),  # embed() needs its mean/std
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed},
    }
    return model.eval()


@torch.inference_mode()
def embed(net: nn.Module, images: torch.Tensor, resolution: int, batch_size: int = 256,
          augment: AugmentConfig | None = None, device="cpu") -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, D) float32 penultimate features on the CPU, through the
    deterministic test transform (normalised with ``augment``'s mean/std, channel defaults if None)."""
    was_training = net.training
    net.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = test_transform(images[i:i + batch_size].to(device), resolution, augment)
        out.append(penultimate(net, x).float().cpu())
    net.train(was_training)
    return torch.cat(out)


def save_feature_net(net: nn.Module, folder) -> None:
    """``folder/config.json`` + ``folder/model.safetensors``; the folder appears complete or not at all."""
    with atomic_dir(folder) as tmp:
        save_tensors(tmp / WEIGHTS_FILE, net.state_dict())
        write_json(tmp / CONFIG_FILE, net.config)


def load_feature_net(folder) -> tuple[nn.Module, AugmentConfig]:
    """(network in eval mode with ``.config``, the AugmentConfig whose mean/std ``embed`` needs)."""
    folder = Path(folder)
    config = read_json(folder / CONFIG_FILE)
    state, _ = load_tensors(folder / WEIGHTS_FILE)
    net = build_net(config["net"], config["num_classes"], config["channels"], config["resolution"],
                    config["width"], config["depth"])
    net.load_state_dict(state)
    net.config = config
    return net.eval(), AugmentConfig(**config["augment"])
