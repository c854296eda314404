"""DiT's conditioning embedders, shared: the reference DiT has one timestep + class embedder, which
diffusers' ``DiTTransformer2DModel`` copies into every block (``transformer_blocks[i].norm1.emb``). A
converted DiT checkpoint holds identical copies, so tying them to block 0's changes no output: the
model then trains one set of embedder parameters and one label table, and evaluates the embedder once
per forward. Pretraining (generator/pretrain.py) and fine-tuning (method/finetune.py, DiffFit) both
train tied and save untied (diffusers' layout).
"""

from __future__ import annotations

import copy
import warnings

import torch
from diffusers.models.embeddings import LabelEmbedding
from torch import nn


def label_embeddings(model: nn.Module) -> list[LabelEmbedding]:
    return [m for m in model.modules() if isinstance(m, LabelEmbedding)]


def tie_class_embeddings(model: nn.Module) -> nn.Parameter:
    """Make every block's class-embedding table block 0's Parameter; set all label-dropout probs to 0."""
    embs = label_embeddings(model)
    shared = embs[0].embedding_table.weight
    for e in embs:
        e.embedding_table.weight = shared
        e.dropout_prob = 0.0  # the trainer drops labels (-> null class num_classes) once per sample
    return shared


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
