"""The paper's generator at its published sizes, as configuration facts (no weights, nothing downloaded).

DiT-XL/2-256 is ``facebook/DiT-XL-2-256``'s ``transformer/config.json`` (diffusers'
``DiTTransformer2DModel``); sd-vae-ft-ema and sd-vae-ft-mse (``stabilityai/``) share one
``AutoencoderKL`` architecture and differ only in their decoder weights. Built with random weights by
benchmarks/fullsize.py (the paper path's code at real size on any device) and benchmarks/cost.py (FLOP
counts on the meta device). The parameter counts the architecture implies, derived here by hand from
the same facts, check the built models.
"""

from __future__ import annotations

DIT_XL_2_256 = dict(
    sample_size=32, patch_size=2, in_channels=4, out_channels=8,  # 256 px / 8 (VAE) = 32; eps and variance
    num_layers=28, num_attention_heads=16, attention_head_dim=72,  # hidden 1152
    num_embeds_ada_norm=1000, norm_type="ada_norm_zero", norm_elementwise_affine=False, norm_eps=1e-6,
    activation_fn="gelu-approximate", attention_bias=True, dropout=0.0, upcast_attention=False,
)
SD_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    act_fn="silu", norm_num_groups=32, sample_size=256, scaling_factor=0.18215,
)
FREQUENCY_DIM = 256  # the sinusoidal timestep features DiT's timestep MLP reads


def dit_parameters(cfg: dict = DIT_XL_2_256) -> int:
    """Parameters of the reference DiT (facebookresearch/DiT ``models.py``: one timestep and one class
    embedder) without its fixed sin-cos position table: DiT-XL/2 gives 674,834,720 (675,129,632 with
    the table, the paper's "675M"). A diffusers model with its per-block embedders tied
    (generator/embedders.py ``tie_embedders``) has exactly these."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    p, c_in, c_out, k = cfg["patch_size"], cfg["in_channels"], cfg["out_channels"], cfg["num_embeds_ada_norm"] + 1

    def linear(i, o):
        return i * o + o

    block = linear(d, 3 * d) + linear(d, d) + linear(d, 4 * d) + linear(4 * d, d) + linear(d, 6 * d)  # qkv, proj,
    embed = (p * p * c_in * d + d) + linear(FREQUENCY_DIM, d) + linear(d, d) + k * d  # mlp, adaLN; patches, t, y
    final = linear(d, p * p * c_out) + linear(d, 2 * d)
    return embed + cfg["num_layers"] * block + final


def difffit_trainable(cfg: dict = DIT_XL_2_256, gamma_blocks: int | None = None) -> int:
    """Trainable scalars under DiffFit as method/difffit.py applies it to the tied diffusers DiT: every
    bias, the class table (with the null row) and per-channel gammas on q, k, v, out and both residual
    branches of the first half of the blocks."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    layers = cfg["num_layers"]
    gamma_blocks = layers // 2 if gamma_blocks is None else gamma_blocks
    per_block = 6 * d + 3 * d + d + 4 * d + d  # adaLN linear, q/k/v, out, ff in (4d), ff out
    biases = d + layers * per_block + 2 * d + 2 * d + cfg["patch_size"] ** 2 * cfg["out_channels"]  # patches, t-MLP, out
    table = (cfg["num_embeds_ada_norm"] + 1) * d
    return biases + table + gamma_blocks * 6 * d
