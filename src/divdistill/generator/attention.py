"""The DiT's self-attention with its product computed in fp32, also under bf16 autocast.

Under bf16 autocast torch runs ``scaled_dot_product_attention`` in bf16 too, and on the CPU its bf16
backward is ~14x slower than the fp32 one (torch 2.13, the demo DiT: 22 ms against 1.5 ms a call),
which cancels the ~4x of bf16 matmuls (``benchmarks/bench_kernels.py``). :class:`Fp32Attention` is
diffusers' ``AttnProcessor2_0`` for a DiT block's self-attention (no mask, no cross-attention, no
extra norms) with the product alone taken out of autocast:

    q, k, v = to_q(h), to_k(h), to_v(h)                # (B, T, D): bf16 under autocast
    o = softmax(q k^T / sqrt(d)) v                     # per head (B, H, T, d), in fp32
    out = to_out(o)                                    # (B, T, D)

Without autocast it is the same computation as diffusers' processor, bit for bit
(``tests/test_pretrain.py``). The DiT's pretraining uses it when it runs in bf16 (``DiTConfig.precision``);
the model it returns gets diffusers' processor back, so it samples as a loaded one does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Fp32Attention:
    """A diffusers attention processor: DiT self-attention, the attention product in fp32."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("Fp32Attention is the DiT's self-attention: no cross-attention, no mask")
        b = hidden_states.shape[0]
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)  # (B, T, D)
        head = k.shape[-1] // attn.heads
        q, k, v = (x.view(b, -1, attn.heads, head).transpose(1, 2) for x in (q, k, v))  # (B, H, T, d)
        with torch.autocast(q.device.type, enabled=False):
            o = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=0.0, is_causal=False)
        o = o.transpose(1, 2).reshape(b, -1, attn.heads * head).to(q.dtype)  # (B, T, D)
        o = attn.to_out[1](attn.to_out[0](o))  # projection, dropout
        return o / attn.rescale_output_factor


def use_fp32_attention(model) -> None:
    """Give every transformer block's self-attention :class:`Fp32Attention` (after checking it has
    nothing the processor leaves out)."""
    for block in model.transformer_blocks:
        attn = block.attn1
        extras = {"spatial_norm": attn.spatial_norm, "group_norm": attn.group_norm, "norm_q": attn.norm_q,
                  "norm_k": attn.norm_k, "residual_connection": attn.residual_connection or None}
        if any(v is not None for v in extras.values()):
            raise ValueError(f"Fp32Attention: this attention has {[k for k, v in extras.items() if v is not None]}")
        attn.set_processor(Fp32Attention())


def default_attention(model) -> None:
    """diffusers' own processor (what ``from_pretrained`` gives a DiT) on every block again."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    for block in model.transformer_blocks:
        block.attn1.set_processor(AttnProcessor2_0())
