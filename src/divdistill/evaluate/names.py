"""The test networks' name table: name -> the label the tables print. Torch-free, so the Snakefile's
checks and the report read it without importing torch; ``nets.py`` holds each network's builder
(its ``NETS``, checked against this table when imported)."""

from __future__ import annotations

NET_LABELS = {"convnet": "ConvNet", "resnetap10": "ResNetAP-10", "resnet18": "ResNet-18"}


def net_label(name: str) -> str:
    return NET_LABELS[name]


def net_labels() -> dict[str, str]:
    return dict(NET_LABELS)
