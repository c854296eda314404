"""DiffFit on a tiny random diffusers DiT: exact init, parameter counts, tying, folding, save/load."""

import pytest
import torch
from diffusers import DiTTransformer2DModel

from divdistill.generator.embedders import tie_class_embeddings
from divdistill.method.difffit import GAMMA, apply_difffit, count_trainable, fold_difffit

CFG = dict(sample_size=8, in_channels=4, out_channels=8, patch_size=2, num_layers=4, num_attention_heads=2,
           attention_head_dim=8, num_embeds_ada_norm=10, norm_type="ada_norm_zero")
WIDTH = 16


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = DiTTransformer2DModel(**CFG).eval()
    tie_class_embeddings(m)
    return m


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 4, 8, 8, generator=g), torch.tensor([0, 500, 999]), torch.tensor([1, 10, 7])  # 10 = null


def run(m, x, t, y):
    with torch.no_grad():
        return m(x, timestep=t, class_labels=y).sample


def tables(m):
    return [b.norm1.emb.class_embedder.embedding_table.weight for b in m.transformer_blocks]


def test_tie_class_embeddings(model):
    ws = tables(model)
    assert all(w is ws[0] for w in ws)
    assert all(b.norm1.emb.class_embedder.dropout_prob == 0 for b in model.transformer_blocks)
    assert sum(p.numel() for p in model.parameters()) == sum(  # counted once
        p.numel() for n, p in model.named_parameters(remove_duplicate=False) if "embedding_table" not in n
    ) + ws[0].numel()


def test_apply_is_bit_identical_at_init(model, inputs):
    before = run(model, *inputs)
    apply_difffit(model)
    assert torch.equal(before, run(model, *inputs))


def test_trainable_set_and_count(model):
    params = apply_difffit(model)  # default: first half = 2 of 4 blocks
    assert len({id(p) for p in params}) == len(params)
    n_bias = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    n_table = (CFG["num_embeds_ada_norm"] + 1) * WIDTH
    n_gamma = 2 * (4 + 2) * WIDTH
    assert sum(p.numel() for p in params) == n_bias + n_table + n_gamma
    assert count_trainable(model) == dict(bias=n_bias, class_embedding=n_table, gamma=n_gamma, other=0,
                                          total=n_bias + n_table + n_gamma)
    trainable_ids = {id(p) for p in params}
    assert all(p.requires_grad == (id(p) in trainable_ids) for p in model.parameters())
    for i, blk in enumerate(model.transformer_blocks):
        assert not blk.norm1.linear.weight.requires_grad and blk.norm1.linear.bias.requires_grad
        assert not blk.attn1.to_q.weight.requires_grad and not blk.ff.net[2].weight.requires_grad
        assert hasattr(blk.attn1.to_q, GAMMA) == (i < 2) and hasattr(blk.ff, GAMMA) == (i < 2)
    assert count_trainable(DiTTransformer2DModel(**CFG).requires_grad_(False))["total"] == 0


def test_one_step_changes_only_trainable_and_tied_tables_move_together(model, inputs):
    params = apply_difffit(model, num_blocks=3)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(params, lr=0.1)
    x, t, y = inputs
    model(x, timestep=t, class_labels=y).sample.square().mean().backward()
    opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if not p.requires_grad:
            assert not changed and p.grad is None, n
    gammas = [n for n, _ in model.named_parameters() if n.endswith(GAMMA)]
    assert len(gammas) == 3 * 6 and all(not torch.equal(before[n], model.get_parameter(n)) for n in gammas)
    ws = tables(model)
    assert not torch.equal(before["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"], ws[0])
    assert all(w is ws[0] and torch.equal(w, ws[0]) for w in ws)
    with torch.no_grad():  # an in-place update through block 0 is seen by the last block
        ws[0][2].add_(1.0)
    assert torch.equal(ws[-1][2], ws[0][2])


def test_fold_save_load_roundtrip(model, inputs, tmp_path):
    apply_difffit(model)
    base = run(model, *inputs)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(GAMMA):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    ref = run(model, *inputs)
    assert (ref - base).abs().max() > 1e-3  # the gammas really act
    fold_difffit(model)
    assert not any(GAMMA in k for k in model.state_dict())
    assert not any(m._forward_hooks for m in model.modules())
    ws = tables(model)
    assert len({w.data_ptr() for w in ws}) == len(ws)  # untied
    torch.testing.assert_close(run(model, *inputs), ref, atol=1e-5, rtol=1e-5)

    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = DiTTransformer2DModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is DiTTransformer2DModel
    torch.testing.assert_close(run(loaded, *inputs), ref, atol=1e-5, rtol=1e-5)
