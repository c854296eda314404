"""Evaluation trainer throughput against its limit, the test network's own forward + backward + SGD step.

Three paths over the same images, network and batch size, interleaved so background load hits all alike:

    trainer   evaluate/trainer.py ``train_and_test`` itself (one epoch): whole-batch on-device
              augmentation (CutMix with --cutmix), the epoch's bookkeeping, one test pass of 8 images
    limit     the network alone: forward, backward and SGD step on batches augmented beforehand
              (the trainer can at best reach this; target: trainer >= 0.8 of it)
    naive     the same augmentation per image in a ``Dataset`` collated by a ``DataLoader``

Both paths apply the *same* augmentation code (``augment.augment_batch``: random-resized crop + flip as
one affine warp, colour jitter, PCA lighting, normalisation) and train the same network the same way;
the naive one calls it on one image at a time inside ``Dataset.__getitem__`` (as a torchvision
transform pipeline would) and lets ``DataLoader`` stack the batch. Images/s counts training images
through forward + backward + SGD step. Runs are interleaved so background load hits both alike.

    python benchmarks/bench_trainer.py [--threads 1] [--net convnet] [--res 32] [--images 1000] [--repeats 3]
    python benchmarks/bench_trainer.py --net resnetap10 --width 64 --res 224 --channels 3 --images 192 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from divdistill.data.augment import AugmentConfig, augment_batch
from divdistill.evaluate.nets import build_net
from divdistill.evaluate.trainer import TrainConfig, train_and_test


class PerImage(Dataset):
    """The naive path: augment each uint8 image on its own when it is fetched."""

    def __init__(self, images, labels, res, cfg, seed):
        self.images, self.labels, self.res, self.cfg = images, labels, res, cfg
        self.g = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return augment_batch(self.images[i:i + 1], self.res, self.cfg, self.g)[0], self.labels[i]


def train_epoch_trainer(net, images, labels, res, cfg, batch):
    tcfg = TrainConfig(epochs=1, resolution=res, batch_size=batch, eval_every=0, augment=cfg)
    train_and_test(net, images, labels, images[:8], labels[:8], tcfg, seed=0, progress=False)


def augmented_batches(images, labels, res, cfg, g, batch):
    perm = torch.randperm(len(labels), generator=g)
    return [(augment_batch(images[idx], res, cfg, g), labels[idx])
            for idx in (perm[i:i + batch] for i in range(0, len(labels), batch))]


def train_epoch_limit(net, opt, batches):
    for xb, yb in batches:
        step(net, opt, xb, yb)


def train_epoch_naive(net, opt, loader):
    for xb, yb in loader:
        step(net, opt, xb, yb)


def step(net, opt, x, y):
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--net", default="convnet")
    ap.add_argument("--width", type=int, default=32, help="the demo's ConvNet width")
    ap.add_argument("--res", type=int, default=32, help="32: the demo; 224 is the paper's (slow on a CPU)")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cutmix", type=float, default=0.0, help="CutMix beta in the trainer path (demo 0, paper 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    stored = 32 if args.res <= 32 else 256
    images = torch.randint(0, 256, (args.images, args.channels, stored, stored), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (args.images,), generator=g)
    cfg = AugmentConfig(color_jitter=0.4, lighting=0.1 if args.channels == 3 else 0.0, cutmix_beta=args.cutmix)
    net = build_net(args.net, 10, args.channels, args.res, args.width, 3 if args.net == "convnet" else None)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(PerImage(images, labels, args.res, cfg, 1), batch_size=args.batch, shuffle=True,
                        generator=torch.Generator().manual_seed(2), num_workers=0)
    rates = {"trainer": [], "limit": [], "naive": []}
    batches = augmented_batches(images, labels, args.res, cfg, g, args.batch)
    train_epoch_limit(net, opt, batches[:2])  # warm-up
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        train_epoch_trainer(net, images, labels, args.res, cfg, args.batch)
        rates["trainer"].append(args.images / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        train_epoch_limit(net, opt, batches)
        rates["limit"].append(args.images / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        train_epoch_naive(net, opt, loader)
        rates["naive"].append(args.images / (time.perf_counter() - t0))
    t, lim, n = (statistics.median(rates[k]) for k in ("trainer", "limit", "naive"))
    print(f"{args.net} width {args.width}, {args.res} px, batch {args.batch}, {args.threads} thread(s), "
          f"median of {args.repeats} epochs of {args.images} images")
    print("| path | images/s | of the limit |")
    print("|---|---:|---:|")
    print(f"| trainer (train_and_test) | {t:.1f} | {t / lim:.2f} (target >= 0.8) |")
    print(f"| limit (the network alone) | {lim:.1f} | 1.00 |")
    print(f"| naive (per-image Dataset + DataLoader) | {n:.1f} | {n / lim:.2f} |")


if __name__ == "__main__":
    main()
