"""DiffFit parameter-efficient fine-tuning for diffusers' ``DiTTransformer2DModel``.

DiffFit (Xie et al. 2023): train only biases, the class embedding and per-channel scale factors gamma
(initialised to 1) in the first blocks; everything else is frozen. In diffusers, each
``transformer_blocks[i]`` is a ``BasicTransformerBlock`` (norm_type 'ada_norm_zero') with

    norm1 (AdaLayerNormZero): .linear (adaLN modulation, frozen weight) and .emb, a per-block copy of
          DiT's timestep embedder + class embedder (LabelEmbedding.embedding_table, num_classes + 1 rows);
    attn1 (Attention): to_q / to_k / to_v / to_out[0] (Linear), to_out[1] (Dropout);
    ff (FeedForward): net = [GELU(proj Linear), Dropout, Linear].

gammas live as ``difffit_gamma`` parameters on the Linear modules (q/k/v/out), on ``attn1`` (attention
residual branch) and on ``ff`` (MLP residual branch), applied by forward hooks ``out * gamma``
(bit-identical at gamma == 1). ``fold_difffit`` merges them into the Linear weights so the model is a
plain diffusers model again.
"""

from __future__ import annotations

import torch
from torch import nn

from ..generator.embedders import label_embeddings

GAMMA = "difffit_gamma"
_HOOK = "_difffit_hook"


def _gamma_hook(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    return output * getattr(module, GAMMA)


def _add_gamma(module: nn.Module, width: int) -> nn.Parameter:
    ref = next(module.parameters())
    gamma = nn.Parameter(torch.ones(width, device=ref.device, dtype=ref.dtype))
    module.register_parameter(GAMMA, gamma)
    setattr(module, _HOOK, module.register_forward_hook(_gamma_hook))
    return gamma


def _ff_out_linear(ff: nn.Module) -> nn.Linear:
    return [m for m in ff.net if isinstance(m, nn.Linear)][-1]


def _gamma_sites(block: nn.Module) -> list[tuple[nn.Module, int]]:
    """(module whose output gets a gamma, width) for one BasicTransformerBlock."""
    a = block.attn1
    lins = [a.to_q, a.to_k, a.to_v, a.to_out[0]]
    return [(m, m.out_features) for m in lins] + [(a, a.to_out[0].out_features), (block.ff, _ff_out_linear(block.ff).out_features)]


def _biases(model: nn.Module) -> list[nn.Parameter]:
    return [m.bias for m in model.modules() if isinstance(getattr(m, "bias", None), nn.Parameter)]


def _unique(params) -> list[nn.Parameter]:
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def apply_difffit(model: nn.Module, num_blocks: int | None = None) -> list[nn.Parameter]:
    """Add DiffFit gammas to the first ``num_blocks`` blocks (default: half) and set requires_grad.

    Trainable: every module's bias (incl. norm1.linear.bias; not its weight), the class-embedding
    table(s) (one if tied), the gammas. Returns the trainable parameters without duplicates.
    """
    blocks = model.transformer_blocks
    num_blocks = len(blocks) // 2 if num_blocks is None else num_blocks
    if any(hasattr(m, GAMMA) for m in model.modules()):
        raise RuntimeError("apply_difffit was already applied to this model")
    gammas = [_add_gamma(m, w) for blk in blocks[:num_blocks] for m, w in _gamma_sites(blk)]
    tables = [e.embedding_table.weight for e in label_embeddings(model)]
    trainable = _unique(_biases(model) + tables + gammas)
    ids = {id(p) for p in trainable}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return trainable


@torch.no_grad()
def fold_difffit(model: nn.Module) -> nn.Module:
    """Fold gammas into the preceding Linear (q/k/v/out: own; attn1 residual -> to_out[0];
    ff residual -> ff's last Linear), remove hooks and gamma parameters, and untie class tables.
    Returns the (in-place modified) plain model; requires_grad flags are left as they were."""
    for m in list(model.modules()):
        if not hasattr(m, GAMMA):
            continue
        gamma = getattr(m, GAMMA)
        if isinstance(m, nn.Linear):
            lin = m
        elif hasattr(m, "to_out"):  # Attention: residual gamma into the output projection
            lin = m.to_out[0]
        else:  # FeedForward
            lin = _ff_out_linear(m)
        lin.weight.mul_(gamma.to(lin.weight)[:, None])
        if lin.bias is not None:
            lin.bias.mul_(gamma.to(lin.bias))
        getattr(m, _HOOK).remove()
        delattr(m, _HOOK)
        delattr(m, GAMMA)
    seen = set()
    for e in label_embeddings(model):
        w = e.embedding_table.weight
        if id(w) in seen:
            e.embedding_table.weight = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
        seen.add(id(w))
    return model


def count_trainable(model: nn.Module) -> dict[str, int]:
    """Number of trainable scalars by group: bias, class_embedding, gamma, other, total (shared counted once)."""
    bias_ids = {id(p) for p in _biases(model)}
    table_ids = {id(e.embedding_table.weight) for e in label_embeddings(model)}
    counts = dict.fromkeys(["bias", "class_embedding", "gamma", "other"], 0)
    for name, p in model.named_parameters():  # deduplicates shared parameters
        if not p.requires_grad:
            continue
        group = ("gamma" if name.endswith(GAMMA) else "bias" if id(p) in bias_ids
                 else "class_embedding" if id(p) in table_ids else "other")
        counts[group] += p.numel()
    counts["total"] = sum(counts.values())
    return counts
