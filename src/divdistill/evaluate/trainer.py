"""Train a fresh test network on a (distilled) training set and test it on real images.

IDC protocol (``hard``): SGD with momentum and weight decay, step decay (lr x gamma at 2/3
and 5/6 of training), cross-entropy on CutMix-ed batches of augmented images.
Soft labels (``soft``, SRe2L / RDED): a teacher relabels every augmented, CutMix-ed batch the student
sees, the student minimises KL(softmax(t/T) || softmax(s/T)) T^2 (``kd_loss``) with AdamW under a
quarter-cosine decay. ``train_augment=False`` feeds the images through the test transform only
(the ``-noaug`` protocols of the augmentation-robust score). evaluate/protocols.py names them.
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
    train_augment: bool = True  # False: training images through the test transform only (no CutMix)
    optimizer: str = "sgd"  # "sgd" (momentum, L2 weight decay) or "adamw" (decoupled weight decay)
    schedule: str = "multistep"  # "multistep" (milestones, gamma) or "quarter_cosine" (see lr_factor)
    labels: str = "hard"  # "hard": cross-entropy on the set's labels; "soft": KL to a teacher's logits
    temperature: float = 1.0  # T of the soft labels' KL (kd_loss)

    def __post_init__(self):
        self.milestones = tuple(float(m) for m in self.milestones)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        for key, value, known in (("optimizer", self.optimizer, ("sgd", "adamw")), ("labels", self.labels, ("hard", "soft")),
                                  ("schedule", self.schedule, ("multistep", "quarter_cosine"))):
            if value not in known:
                raise ValueError(f"{key} must be one of {known}, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not all(0 < m <= 1 for m in self.milestones):
            raise ValueError(f"milestones are fractions of training in (0, 1], got {self.milestones}")

    def milestone_epochs(self) -> list[int]:
        """Epochs after which the lr drops: floor(f * epochs) as IDC's 2*E//3, 5*E//6. Rounding to a
        tenth first lets 4-digit fractions (0.6667, 0.8333) land where 2/3 and 5/6 would."""
        return sorted({max(1, math.floor(round(f * self.epochs, 1))) for f in self.milestones})


def lr_factor(epoch: int, epochs: int) -> float:
    """The quarter-cosine decay of RDED and DD-Ranking, stepped once per epoch: 0.5 (1 + cos(pi e / (2E))),
    from 1 at the start to 0.5 after the last epoch (a quarter of a cosine period, not annealed to 0)."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs / 2)) if epoch <= epochs else 0.0


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) * T^2, averaged over the batch (N, classes).
    The T^2 keeps the gradient's scale as T changes (Hinton et al. 2015); AdamW is invariant to it."""
    log_p = F.log_softmax(student / temperature, dim=1)
    q = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature ** 2


def _optimiser(net: nn.Module, cfg: TrainConfig):
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.schedule == "quarter_cosine":
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, cfg.epochs))
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, cfg.milestone_epochs(), cfg.gamma)


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


def _fingerprint(cfg: TrainConfig, seed: int, net: nn.Module, train_x, train_y, test_x, test_y,
                 teacher: nn.Module | None) -> dict:
    """What a checkpoint must agree on to be resumed (it keys the checkpoint folder): the schedule, the
    seed, the network and its initial weights, the data, the teacher's weights."""
    return {"cfg": repr(cfg), "seed": seed, "net": type(net).__name__,
            "weights": tensor_digest(*net.state_dict().values()),
            "train": tensor_digest(train_x, train_y), "test": tensor_digest(test_x, test_y),
            **({} if teacher is None else {"teacher": tensor_digest(*teacher.state_dict().values())})}


def _batch(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, g: torch.Generator):
    """The images a training step sees and their mixed labels: (x (B, C, res, res), y_a, y_b, lam)."""
    aug = cfg.augment
    if not cfg.train_augment:
        return test_transform(x, cfg.resolution, aug), y, y, 1.0
    xb = augment_batch(x, cfg.resolution, aug, g)  # (B, C, res, res)
    if aug.cutmix_beta > 0:
        return cutmix(xb, y, aug.cutmix_beta, g)
    return xb, y, y, 1.0


def _train_epoch(net: nn.Module, opt, train_x: torch.Tensor, train_y: torch.Tensor, cfg: TrainConfig,
                 g: torch.Generator, teacher: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the shuffled training set (every draw from ``g``: the order, augmentation, CutMix):
    (summed loss, lam-weighted hits), both kept on the device (no sync per batch). With soft labels
    the teacher relabels the very batch the student sees (augmented and mixed: DD-Ranking's mode "M")."""
    device, n = train_x.device, len(train_y)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    perm = torch.randperm(n, generator=g, device=device)
    for i in range(0, n, cfg.batch_size):
        idx = perm[i:i + cfg.batch_size]
        xb, ya, yb2, lam = _batch(train_x[idx], train_y[idx], cfg, g)
        out = net(xb)
        if cfg.labels == "soft":
            with torch.no_grad():
                target = teacher(xb)  # (B, classes): the teacher in eval mode, no gradient
            loss = kd_loss(out, target, cfg.temperature)
        else:
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
                   checkpoint_dir=None, checkpoint_every: int = 0, teacher: nn.Module | None = None) -> dict:
    """Train ``net`` (freshly built after ``seed_everything(seed)``) on uint8 images (N, C, H, W) with
    int64 labels, test on (M, C, H', W'). Accuracies are fractions in [0, 1].

    Returns {'test_acc': final epoch (the headline), 'best_test_acc' / 'best_epoch': best over the
    evaluated epochs (model selection on the test set: report only beside the headline),
    'train_loss': final epoch's mean loss, 'curve': [{epoch, train_loss, train_acc, lr[, test_acc]}]}.
    ``teacher`` (soft labels only): a trained network of the same classes, relabelling every batch.
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
    opt, sched = _optimiser(net, cfg)
    aug, n = cfg.augment, len(train_y)
    if (teacher is None) != (cfg.labels == "hard"):
        raise ValueError(f"labels {cfg.labels!r}: a teacher is needed for soft labels and only for them")
    if teacher is not None:
        teacher = teacher.to(device).eval().requires_grad_(False)

    curve, best_acc, best_epoch = [], -1.0, 0
    kept = checkpoint_dir is not None and checkpoint_every > 0
    run = Resumable(checkpoint_dir if kept else None,
                    _fingerprint(cfg, seed, net, train_x, train_y, test_x, test_y, teacher) if kept else {},
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
        loss_sum, correct = _train_epoch(net, opt, train_x, train_y, cfg, g, teacher)
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
