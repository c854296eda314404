"""Train a fresh test network on a (distilled) training set and test it on real images.

IDC protocol: SGD with momentum and weight decay, step decay (lr x gamma at 2/3
and 5/6 of training), cross-entropy on CutMix-ed batches of augmented images.
The headline number is the test accuracy at the **final** epoch; the best
accuracy over the evaluated epochs picks a model on the test set and is returned
only to be reported beside it.

Reproducibility: call ``seed_everything(seed)`` and build the network right after,
so its initialisation follows from the seed; ``train_and_test`` then draws every
shuffle and augmentation from its own generator seeded with the same seed. On CPU
two runs with the same seed and thread count are bit-identical.

    seed_everything(seed)
    net = build_net("convnet", num_classes, channels, resolution, width=32, depth=3)
    res = train_and_test(net, x, y, test_x, test_y, TrainConfig(epochs=100, resolution=32), seed)
"""

from __future__ import annotations

import math
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..data.augment import AugmentConfig, augment_batch, cutmix, test_transform
from ..io import Resumable, tensor_digest
from ..runtime.finite import require_finite


@dataclass
class TrainConfig:
    epochs: int  # passes over the training set
    resolution: int  # input side the network sees (224 at paper scale, 32 in the demo)
    batch_size: int = 64  # training batch (the last batch of an epoch may be smaller)
    lr: float = 0.01  # initial SGD learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty on every parameter, as IDC
    milestones: tuple[float, ...] = (2 / 3, 5 / 6)  # fractions of training after which lr *= gamma
    gamma: float = 0.2  # lr decay factor at each milestone
    eval_every: int = 10  # test every N epochs, and always after the last; 0: only after the last
    test_batch_size: int = 256  # test images per forward pass (memory only, no effect on results)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training augmentation and CutMix

    def __post_init__(self):
        self.milestones = tuple(float(m) for m in self.milestones)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not all(0 < m <= 1 for m in self.milestones):
            raise ValueError(f"milestones are fractions of training in (0, 1], got {self.milestones}")

    def milestone_epochs(self) -> list[int]:
        """Epochs after which the lr drops: floor(f * epochs) as IDC's 2*E//3, 5*E//6. Rounding to a
        tenth first lets 4-digit fractions (0.6667, 0.8333) land where 2/3 and 5/6 would."""
        return sorted({max(1, math.floor(round(f * self.epochs, 1))) for f in self.milestones})


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch's global RNGs (network initialisation draws from torch's),
    and ask for deterministic kernels. Build the network *after* calling this."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; read when its handle is created
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        if torch.cuda.is_available():
            # warn_only: a CUDA op without a deterministic kernel (e.g. adaptive pooling's backward)
            # warns instead of stopping a long run. Skipped on CPU, whose kernels used here are
            # deterministic already: the switch imports torch._inductor (~1.4 s in every job).
            torch.use_deterministic_algorithms(True, warn_only=True)


@torch.inference_mode()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, resolution: int, augment: AugmentConfig,
             device, batch_size: int = 256) -> float:
    """Top-1 accuracy (fraction) on uint8 images through the test transform; restores train mode."""
    was_training = net.training
    net.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        xb = test_transform(x[i:i + batch_size].to(device), resolution, augment)
        correct += (net(xb).argmax(1) == y[i:i + batch_size].to(device)).sum().item()
    net.train(was_training)
    return correct / len(y)


def _fingerprint(cfg: TrainConfig, seed: int, net: nn.Module, train_x, train_y, test_x, test_y) -> dict:
    """What a checkpoint must agree on to be resumed (it keys the checkpoint folder): the schedule, the
    seed, the network and its initial weights, the data."""
    return {"cfg": repr(cfg), "seed": seed, "net": type(net).__name__,
            "weights": tensor_digest(*net.state_dict().values()),
            "train": tensor_digest(train_x, train_y), "test": tensor_digest(test_x, test_y)}


def _train_epoch(net: nn.Module, opt, train_x: torch.Tensor, train_y: torch.Tensor, cfg: TrainConfig,
                 g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the shuffled training set (every draw from ``g``: the order, augmentation, CutMix):
    (summed loss, lam-weighted hits), both kept on the device (no sync per batch)."""
    device, aug, n = train_x.device, cfg.augment, len(train_y)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    perm = torch.randperm(n, generator=g, device=device)
    for i in range(0, n, cfg.batch_size):
        idx = perm[i:i + cfg.batch_size]
        xb, yb = augment_batch(train_x[idx], cfg.resolution, aug, g), train_y[idx]  # (B, C, res, res)
        ya, yb2, lam = yb, yb, 1.0
        if aug.cutmix_beta > 0:
            xb, ya, yb2, lam = cutmix(xb, yb, aug.cutmix_beta, g)
        out = net(xb)
        loss = lam * F.cross_entropy(out, ya) + (1 - lam) * F.cross_entropy(out, yb2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        pred = out.detach().argmax(1)
        loss_sum += loss.detach() * len(idx)
        # accuracy against the mixed target: lam-weighted hits on y_a and y_b
        correct += lam * (pred == ya).sum() + (1 - lam) * (pred == yb2).sum()
    return loss_sum, correct


def train_and_test(net: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                   test_y: torch.Tensor, cfg: TrainConfig, seed: int, device="cpu",
                   on_epoch: Callable[[int, dict], None] | None = None, progress: bool = True,
                   checkpoint_dir=None, checkpoint_every: int = 0) -> dict:
    """Train ``net`` (freshly built after ``seed_everything(seed)``) on uint8 images (N, C, H, W) with
    int64 labels, test on (M, C, H', W'). Accuracies are fractions in [0, 1].

    Returns {'test_acc': final epoch (the headline), 'best_test_acc' / 'best_epoch': best over the
    evaluated epochs (model selection on the test set: report only beside the headline),
    'train_loss': final epoch's mean loss, 'curve': [{epoch, train_loss, train_acc, lr[, test_acc]}]}.
    ``on_epoch(epoch, metrics)`` is called after every epoch with that epoch's curve entry minus 'epoch'.
    With ``checkpoint_dir`` and ``checkpoint_every`` > 0, the network, optimiser, schedule, generator
    and curve are saved every that many epochs; a run finding a checkpoint resumes after its epoch
    and ends with the result of an uninterrupted run (bit-identical on CPU); the folder is keyed by the
    configuration, initial weights and data (``io.Checkpoints``), so another configuration's checkpoint
    is never resumed; the checkpointed epochs
    are passed to ``on_epoch`` again first, so a fresh MLflow run still holds the whole curve.
    """
    device = torch.device(device)
    net = net.to(device).train()
    train_x, train_y = train_x.to(device), train_y.to(device)  # kept whole on the device (uint8)
    g = torch.Generator(device=device).manual_seed(seed)  # every shuffle, augmentation and CutMix draw
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, cfg.milestone_epochs(), cfg.gamma)
    aug, n = cfg.augment, len(train_y)

    curve, best_acc, best_epoch = [], -1.0, 0
    kept = checkpoint_dir is not None and checkpoint_every > 0
    run = Resumable(checkpoint_dir if kept else None,
                    _fingerprint(cfg, seed, net, train_x, train_y, test_x, test_y) if kept else {},
                    checkpoint_every, cfg.epochs, keep_final=False)
    held: dict = {}

    def restore(ck: dict) -> None:
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        g.set_state(ck["rng"].to(g.get_state().device))
        held.update(ck)

    start = run.start(restore) + 1  # epochs count from 1; a checkpoint's step is its last epoch
    if held:
        curve, best_acc, best_epoch = held["curve"], held["best_acc"], held["best_epoch"]
        for row in curve if on_epoch is not None else []:
            on_epoch(row["epoch"], {k: v for k, v in row.items() if k != "epoch"})
    bar = tqdm(range(start, cfg.epochs + 1), desc="train", file=sys.stderr, disable=not progress, leave=False,
               initial=start - 1, total=cfg.epochs)
    for epoch in bar:
        lr = opt.param_groups[0]["lr"]
        loss_sum, correct = _train_epoch(net, opt, train_x, train_y, cfg, g)
        sched.step()
        require_finite(loss_sum, epoch, "training loss (epoch sum)")  # one sync per epoch, not per batch

        row = {"epoch": epoch, "train_loss": loss_sum.item() / n, "train_acc": correct.item() / n, "lr": lr}
        if epoch == cfg.epochs or (cfg.eval_every > 0 and epoch % cfg.eval_every == 0):
            row["test_acc"] = evaluate(net, test_x, test_y, cfg.resolution, aug, device, cfg.test_batch_size)
            if row["test_acc"] > best_acc:
                best_acc, best_epoch = row["test_acc"], epoch
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", test=f"{row['test_acc']:.3f}")
        curve.append(row)
        run.step_done(epoch, lambda: {"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                                      "rng": g.get_state(), "curve": curve, "best_acc": best_acc,
                                      "best_epoch": best_epoch})
        if on_epoch is not None:
            on_epoch(epoch, {k: v for k, v in row.items() if k != "epoch"})
    bar.close()
    run.finish()  # done: the caller writes the result

    return {"test_acc": curve[-1]["test_acc"], "best_test_acc": best_acc, "best_epoch": best_epoch,
            "train_loss": curve[-1]["train_loss"], "curve": curve}
