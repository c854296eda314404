"""Evaluation trainer throughput: whole-batch on-device augmentation (``trainer.train_and_test``'s path)
vs. the usual naive path, a per-image transform in a ``Dataset`` collated by a ``DataLoader``.

Both paths apply the *same* augmentation code (``augment.augment_batch``: random-resized crop + flip as
one affine warp, colour jitter, PCA lighting, normalisation) and train the same network the same way;
the naive one calls it on one image at a time inside ``Dataset.__getitem__`` (as a torchvision
transform pipeline would) and lets ``DataLoader`` stack the batch. Images/s counts training images
through forward + backward + SGD step. Runs are interleaved so background load hits both alike.

    python benchmarks/bench_trainer.py [--threads 1] [--net convnet] [--res 32] [--images 1000] [--repeats 3]
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


class PerImage(Dataset):
    """The naive path: augment each uint8 image on its own when it is fetched."""

    def __init__(self, images, labels, res, cfg, seed):
        self.images, self.labels, self.res, self.cfg = images, labels, res, cfg
        self.g = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return augment_batch(self.images[i:i + 1], self.res, self.cfg, self.g)[0], self.labels[i]


def train_epoch_batched(net, opt, images, labels, res, cfg, g, batch):
    perm = torch.randperm(len(labels), generator=g)
    for i in range(0, len(labels), batch):
        idx = perm[i:i + batch]
        step(net, opt, augment_batch(images[idx], res, cfg, g), labels[idx])


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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    stored = 32 if args.res <= 32 else 256
    images = torch.randint(0, 256, (args.images, args.channels, stored, stored), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (args.images,), generator=g)
    cfg = AugmentConfig(color_jitter=0.4, lighting=0.1 if args.channels == 3 else 0.0)
    net = build_net(args.net, 10, args.channels, args.res, args.width, 3 if args.net == "convnet" else None)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(PerImage(images, labels, args.res, cfg, 1), batch_size=args.batch, shuffle=True,
                        generator=torch.Generator().manual_seed(2), num_workers=0)
    rates = {"batched": [], "naive": []}
    train_epoch_batched(net, opt, images[:args.batch * 2], labels[:args.batch * 2], args.res, cfg, g, args.batch)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        train_epoch_batched(net, opt, images, labels, args.res, cfg, g, args.batch)
        rates["batched"].append(args.images / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        train_epoch_naive(net, opt, loader)
        rates["naive"].append(args.images / (time.perf_counter() - t0))
    b, n = statistics.median(rates["batched"]), statistics.median(rates["naive"])
    print(f"{args.net} width {args.width}, {args.res} px, batch {args.batch}, {args.threads} thread(s), "
          f"median of {args.repeats} epochs of {args.images} images")
    print(f"batched on-device augmentation: {b:8.1f} images/s")
    print(f"per-image transform + DataLoader: {n:8.1f} images/s")
    print(f"speed-up: {b / n:.1f}x (target >= 3x)")


if __name__ == "__main__":
    main()
