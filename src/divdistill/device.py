"""Where jobs run: CUDA when present, the CPU otherwise.

On CUDA, TF32 matmuls/convolutions are on (fp32 storage, ~10-bit mantissa products: the
usual trade for 2-3x on Ampere and later), and the DiT's forward pass runs under bf16
autocast; losses, the memories' similarities, the sampler's update and the evaluation
networks stay in fp32. On the CPU nothing changes, so CPU runs stay bit-for-bit
repeatable.
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


def dit_autocast(device) -> object:
    """Context for a DiT forward pass: bf16 autocast on CUDA, nothing on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
