"""Test networks of the IDC evaluation protocol (as used by Minimax), all with instance norm.

Instance norm is ``nn.GroupNorm(c, c, affine=True)`` (one group per channel), as in
IDC: unlike BatchNorm it does not depend on the batch, which matters when a
distilled set holds a few dozen images.

    convnet     ConvNet-D: D x [conv3x3 -> IN -> ReLU -> avgpool2], flatten, linear
    resnetap10  ResNetAP-10: [1,1,1,1] basic blocks, 2x2 average pooling instead of strided convs
    resnet18    ResNet-18: [2,2,2,2] basic blocks, strided convs

The ResNet stems follow IDC's ``IntroBlock`` by input size (``models/resnet_ap.py`` L49-77 and
``models/resnet.py`` L25-45 of snu-mllab/Efficient-Dataset-Condensation; size classes at
resnet_ap.py L165-170): "small" (<= 64 px) a 3x3 stride-1 conv, IN, ReLU and no pooling;
"mid" (65..128 px) the same then a 2x2 average pool (ResNetAP) or a 3x3 stride-2 max pool
(ResNet); "large" (> 128 px, the paper's 224) for ResNetAP a 7x7 *stride-1* conv, IN, ReLU and
a 4x4 average pool (224 -> 56), for ResNet-18 the ImageNet 7x7 stride-2 conv and 3x3 stride-2
max pool (224 -> 56).
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from .names import NET_LABELS

SMALL_INPUT = 64  # largest resolution of IDC's "small" stem (stride-1 conv, no pooling)
MID_INPUT = 128  # largest resolution of IDC's "mid" stem


def stem(channels: int, width: int, resolution: int, avgpool_down: bool) -> nn.Sequential:
    """IDC's IntroBlock for ``resolution`` (see the module docstring): (N, C, R, R) -> (N, width, R', R')."""
    norm_relu = [instance_norm(width), nn.ReLU(inplace=True)]
    if resolution <= SMALL_INPUT:
        return nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), *norm_relu)
    if resolution <= MID_INPUT:
        pool = nn.AvgPool2d(2, 2) if avgpool_down else nn.MaxPool2d(3, 2, 1)
        return nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), *norm_relu, pool)
    if avgpool_down:  # ResNetAP: 7x7 stride 1, then a 4x4 average pool (224 -> 56)
        return nn.Sequential(nn.Conv2d(channels, width, 7, 1, 3, bias=False), *norm_relu, nn.AvgPool2d(4, 4))
    return nn.Sequential(nn.Conv2d(channels, width, 7, 2, 3, bias=False), *norm_relu, nn.MaxPool2d(3, 2, 1))


def instance_norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(c, c, affine=True)


class ConvNet(nn.Module):
    def __init__(self, num_classes: int, channels: int, resolution: int, width: int = 128, depth: int = 3):
        super().__init__()
        side = resolution
        layers, c = [], channels
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), instance_norm(width), nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            c, side = width, side // 2
        if side < 1:
            raise ValueError(f"convnet: depth {depth} pools a {resolution} px input below 1 px")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * side * side, num_classes)  # e.g. 128*3*3 for ConvNet-6 at 224 px

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))  # (N, width, s, s) -> (N, width*s*s) -> (N, K)


class BasicBlock(nn.Module):
    """conv3x3-IN-ReLU-conv3x3-IN + shortcut, ReLU. ``avgpool_down``: downsample by a 2x2
    average pool after the first conv (and after the shortcut's 1x1 conv) instead of stride 2."""

    def __init__(self, c_in: int, c_out: int, stride: int, avgpool_down: bool):
        super().__init__()
        conv_stride = 1 if avgpool_down else stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, conv_stride, 1, bias=False)
        self.norm1 = instance_norm(c_out)
        self.pool = nn.AvgPool2d(stride) if avgpool_down and stride > 1 else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = instance_norm(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, conv_stride, bias=False),
                                          nn.AvgPool2d(stride) if avgpool_down and stride > 1 else nn.Identity(),
                                          instance_norm(c_out))

    def forward(self, x):
        out = self.pool(F.relu(self.norm1(self.conv1(x))))
        return F.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], num_classes: int, channels: int, resolution: int,
                 width: int = 64, avgpool_down: bool = False):
        super().__init__()
        self.stem = stem(channels, width, resolution, avgpool_down)  # (N, C, 224, 224) -> (N, width, 56, 56)
        stages, c = [], width
        for i, n in enumerate(blocks):  # channels width, 2w, 4w, 8w; side halves from the 2nd stage on
            c_out = width * 2 ** i
            stages += [BasicBlock(c if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1, avgpool_down)
                       for j in range(n)]
            c = c_out
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():  # He init (fan-out) for convs, as torchvision and IDC
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layers(self.stem(x))                   # (N, 8w, s, s)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))  # (N, 8w) -> (N, K)


def _convnet(num_classes, channels, resolution, width, depth):
    return ConvNet(num_classes, channels, resolution, width, 3 if depth is None else depth)


def _resnet(blocks, avgpool_down, name):
    def build(num_classes, channels, resolution, width, depth):
        if depth is not None:
            raise ValueError(f"{name}: depth is fixed by the architecture, got depth={depth}")
        return ResNet(blocks, num_classes, channels, resolution, width, avgpool_down)
    return build


# Each test network's builder(num_classes, channels, resolution, width, depth); params.yaml's
# evaluate.nets sizes them. Their names and labels: names.py (torch-free), which must list the same.
NETS = {
    "convnet": _convnet,
    "resnetap10": _resnet((1, 1, 1, 1), True, "resnetap10"),
    "resnet18": _resnet((2, 2, 2, 2), False, "resnet18"),
}
if NETS.keys() != NET_LABELS.keys():
    raise ImportError(f"evaluate/nets.py NETS {sorted(NETS)} and evaluate/names.py NET_LABELS "
                      f"{sorted(NET_LABELS)} must name the same networks")


def build_net(name: str, num_classes: int, channels: int, resolution: int, width: int,
              depth: int | None = None) -> nn.Module:
    """A freshly initialised test network (seed the global RNG first for a reproducible init).
    ``depth`` applies to convnet only (default 3)."""
    if name not in NETS:
        raise ValueError(f"unknown test network {name!r}; known: {', '.join(NETS)}")
    return NETS[name](num_classes, channels, resolution, width, depth)


def num_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())

