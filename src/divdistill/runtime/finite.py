"""The guard every training loop shares: a non-finite loss stops the job at once."""

from __future__ import annotations

import torch


def require_finite(loss: torch.Tensor, step: int, what: str = "loss") -> None:
    """Stop a training job loudly at the first nan/inf loss (its MLflow run then ends FAILED) rather
    than train on and save garbage weights."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"{what} is {loss.detach().flatten()[0].item()} at step {step}: stopping "
                                 "(the learning rate or a loss weight may be too large, or an input holds nan/inf)")
