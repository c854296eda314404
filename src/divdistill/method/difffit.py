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

import copy
import warnings

import torch
from diffusers.models.embeddings import LabelEmbedding
from torch import nn

GAMMA = "difffit_gamma"
_HOOK = "_difffit_hook"


def _label_embeddings(model: nn.Module) -> list[LabelEmbedding]:
    return [m for m in model.modules() if isinstance(m, LabelEmbedding)]


def tie_class_embeddings(model: nn.Module) -> nn.Parameter:
    """Make every block's class-embedding table block 0's Parameter; set all label-dropout probs to 0."""
    embs = _label_embeddings(model)
    shared = embs[0].embedding_table.weight
    for e in embs:
        e.embedding_table.weight = shared
        e.dropout_prob = 0.0  # the trainer drops labels (-> null class num_classes) once per sample
    return shared


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
    tables = [e.embedding_table.weight for e in _label_embeddings(model)]
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
    for e in _label_embeddings(model):
        w = e.embedding_table.weight
        if id(w) in seen:
            e.embedding_table.weight = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
        seen.add(id(w))
    return model


def count_trainable(model: nn.Module) -> dict[str, int]:
    """Number of trainable scalars by group: bias, class_embedding, gamma, other, total (shared counted once)."""
    bias_ids = {id(p) for p in _biases(model)}
    table_ids = {id(e.embedding_table.weight) for e in _label_embeddings(model)}
    counts = dict.fromkeys(["bias", "class_embedding", "gamma", "other"], 0)
    for name, p in model.named_parameters():  # deduplicates shared parameters
        if not p.requires_grad:
            continue
        group = ("gamma" if name.endswith(GAMMA) else "bias" if id(p) in bias_ids
                 else "class_embedding" if id(p) in table_ids else "other")
        counts[group] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


# ----------------------------------------------------------------------------- shared embedders


def _once_per_forward(emb) -> None:
    """Memoise the shared embedder on its last call. All blocks of one forward pass it the same timestep
    and label tensors, so it runs once per forward, like the reference DiT's c = t_emb + y_emb, and the
    blocks' gradients meet in one conditioning vector. Tensor versions are part of the key, so an
    in-place change of an input or a parameter (an optimizer step) forces a recomputation."""
    forward, last = emb.forward, {}

    def once(timestep, class_labels, hidden_dtype=None):
        key = (timestep, class_labels, hidden_dtype, torch.is_grad_enabled(),
               tuple(x._version for x in (timestep, class_labels, *emb.parameters())))
        old = last.get("key")
        if old is None or any(a is not b for a, b in zip(old[:3], key[:3])) or old[3:] != key[3:]:
            last["key"], last["out"] = key, forward(timestep, class_labels, hidden_dtype=hidden_dtype)
        return last["out"]

    emb.forward = once  # an instance attribute: nn.Module.__call__ finds it before the class's forward


def tie_embedders(model) -> None:
    """Share block 0's conditioning embedder (timestep MLP + class table) with every block, as the
    reference DiT's single t/y embedder, so DiffFit trains one set of its biases and one label table,
    and evaluate it once per forward. Also zeroes LabelEmbedding's own dropout (``finetune`` drops each
    sample's label once). Warns when the blocks' embedders differ: tying then changes the model."""
    blocks = model.transformer_blocks
    emb0 = blocks[0].norm1.emb
    ref = emb0.state_dict()
    if any(any(not torch.equal(v, ref[k]) for k, v in b.norm1.emb.state_dict().items()) for b in blocks[1:]):
        warnings.warn("the blocks' timestep/class embedders differ; tying them to block 0's changes the model "
                      "(a converted DiT checkpoint holds identical copies: pretrain with tie_embedders too)")
    tie_class_embeddings(model)
    for b in blocks[1:]:
        b.norm1.emb = emb0
    _once_per_forward(emb0)


def untie_embedders(model) -> None:
    """Give every block its own copy of block 0's embedder again (diffusers' layout), so
    ``save_pretrained`` sees no shared tensors; the function is unchanged."""
    blocks = model.transformer_blocks
    blocks[0].norm1.emb.__dict__.pop("forward", None)  # drop the memo (before it is deep-copied)
    for b in blocks[1:]:
        if b.norm1.emb is blocks[0].norm1.emb:
            b.norm1.emb = copy.deepcopy(blocks[0].norm1.emb)
