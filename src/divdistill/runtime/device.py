"""Where jobs run: CUDA when present, the CPU otherwise.

On CUDA, TF32 matmuls/convolutions are on (fp32 storage, ~10-bit mantissa products: the
usual trade for 2-3x on Ampere and later), and the DiT's forward pass runs under bf16
autocast; losses, the memories' similarities, the sampler's update and the evaluation
networks stay in fp32. Sampling takes its precision from ``sample.precision``: "bf16"
autocasts the DiT forward on the CPU too (2.6x on this project's AMX Xeon for a batch of
250 demo images; training is not faster in bf16 on the CPU, so fine-tuning stays fp32 there).
A run is bit-for-bit repeatable on the same machine and thread count in either precision.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch


def resolve(name: str = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; anything else is taken as given (and checked)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


PRECISIONS = ("fp32", "bf16")


def dit_autocast(device, precision: str | None = None) -> object:
    """Context for a DiT forward pass. precision None: bf16 autocast on CUDA, nothing on the CPU;
    "bf16": bf16 autocast on any device; "fp32": nothing (TF32 still applies on CUDA)."""
    device = torch.device(device)
    if precision not in (None, *PRECISIONS):
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" or (precision is None and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
