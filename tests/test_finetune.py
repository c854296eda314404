"""Fine-tuning on a tiny random DiT + VAE: latent cache, DiffFit set, memory terms, exact kill/resume."""

import shutil
import signal
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel

import divdistill.generator.latents as latents_mod
import divdistill.method.finetune as ft
import divdistill.method.state as state
from divdistill.experiment import methods
from divdistill.experiment.names import finetune_settings
from divdistill.generator.latents import cache_latents, encode_posterior, latent_cache, save_latent_cache
from divdistill.io import load_checkpoint
from divdistill.generator.embedders import tie_embedders
from divdistill.method.finetune import FinetuneConfig, finetune
from divdistill.method.memory import Memory

from .conftest import keyed

DIT = dict(sample_size=8, in_channels=4, out_channels=8, patch_size=2, num_layers=2, num_attention_heads=2,
           attention_head_dim=8, num_embeds_ada_norm=10)
VAE = dict(in_channels=1, out_channels=1, block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
           up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, sample_size=16)
NULL = DIT["num_embeds_ada_norm"]
CLASSES = (3, 7)  # generator-space labels of the subset's two classes
N = 24
# 2 epochs x 6 steps of 4; ema 0.9 and lr 1e-2 so a dozen steps move the weights visibly
BASE = dict(epochs=2, batch_size=4, lr=1e-2, ema_decay=0.9, memory_size=4, log_every=5)

# Gamma sites of the first half (block 0 of 2): their weights are rescaled when the gammas are folded.
FOLDED = {f"transformer_blocks.0.{m}.weight"
          for m in ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ff.net.2")}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    torch.manual_seed(0)
    dit = DiTTransformer2DModel(**DIT)
    for b in dit.transformer_blocks[1:]:  # identical per-block embedders, like a converted DiT checkpoint
        b.norm1.emb.load_state_dict(dit.transformer_blocks[0].norm1.emb.state_dict())
    dit.save_pretrained(root / "dit")
    vae = AutoencoderKL(**VAE).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 1, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.tensor(CLASSES).repeat_interleave(N // 2)  # (N,) generator-space labels
    cache = cache_latents(vae, images)
    save_latent_cache(root / "cache.safetensors", cache)
    return SimpleNamespace(root=root, dit_dir=root / "dit", vae=vae, images=images, labels=labels, cache=cache)


def load_dit(s):
    return DiTTransformer2DModel.from_pretrained(s.dit_dir)


def run(s, seed=0, labels=None, **kw):
    cfg = FinetuneConfig(**(BASE | {k: v for k, v in kw.items() if k in FinetuneConfig.__dataclass_fields__}))
    rest = {k: v for k, v in kw.items() if k not in FinetuneConfig.__dataclass_fields__}
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    return finetune(load_dit(s), s.cache, s.labels if labels is None else labels, NULL, sched, cfg, seed,
                    progress=False, **rest)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def assert_same_checkpoint(a, b):
    for part in ("trainable", "ema"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["step"] == b["step"]


# ----------------------------------------------------------------------------- latent cache


def test_cache_matches_direct_encode(setup, tmp_path, monkeypatch):
    s = setup
    cache = cache_latents(s.vae, s.images, batch_size=10)  # chunked: 3 chunks, last one partial
    for suffix, imgs in (("", s.images), ("_flip", s.images.flip(-1))):
        mean, std = encode_posterior(s.vae, imgs)
        assert torch.allclose(cache["mean" + suffix], mean, atol=1e-6)
        assert torch.allclose(cache["std" + suffix], std, atol=1e-6)
    # the VAE is not flip-equivariant: the flipped image's latent is not the flipped latent
    assert not torch.allclose(cache["mean_flip"], cache["mean"].flip(-1), atol=1e-3)

    path = tmp_path / "latents.safetensors"
    first = latent_cache(s.vae, s.images, path)
    monkeypatch.setattr(latents_mod, "encode_posterior", lambda *a, **k: pytest.fail("re-encoded a cached set"))
    again = latent_cache(s.vae, s.images, path)
    assert all(torch.equal(first[k], again[k]) for k in first)
    monkeypatch.undo()
    other = latent_cache(s.vae, 255 - s.images, path)  # other images: stale cache is replaced
    assert not torch.equal(other["mean"], first["mean"])


def test_draw_latents_uses_posterior_and_flip(setup):
    c = {k: v[:4] for k, v in setup.cache.items()}
    idx, flip = torch.arange(4), torch.tensor([False, True, False, True])
    zero = c | {"std": torch.zeros_like(c["std"]), "std_flip": torch.zeros_like(c["std"])}
    z = ft.draw_latents(zero, idx, flip, torch.Generator().manual_seed(0))
    assert torch.equal(z[0::2], c["mean"][0::2]) and torch.equal(z[1::2], c["mean_flip"][1::2])
    z1 = ft.draw_latents(c, idx, flip, torch.Generator().manual_seed(0))
    eps = torch.randn(z1.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z1[1], c["mean_flip"][1] + c["std_flip"][1] * eps[1])


# ----------------------------------------------------------------------------- DiffFit set, labels, tying


def test_only_difffit_set_changes(setup):
    model, summary = run(setup)
    orig = dict(load_dit(setup).named_parameters())
    new = dict(model.named_parameters())
    assert new.keys() == orig.keys() and summary["steps"] == 12
    frozen = [k for k in orig if k.endswith(".weight") and "embedding_table" not in k and k not in FOLDED]
    assert any("norm1.linear.weight" in k for k in frozen)
    for k in frozen:
        assert torch.equal(new[k], orig[k]), k
    changed = {k for k in orig if not torch.equal(new[k], orig[k])}
    assert {k for k in changed if k.endswith(".bias")} and FOLDED <= changed  # biases trained, gammas folded
    assert summary["trainable"]["other"] == 0


def test_conditioned_on_generator_space_labels(setup):
    model, summary = run(setup, label_dropout=0.5)
    tables = [b.norm1.emb.class_embedder.embedding_table.weight for b in model.transformer_blocks]
    orig = load_dit(setup).transformer_blocks[0].norm1.emb.class_embedder.embedding_table.weight
    assert all(torch.equal(t, tables[0]) for t in tables)  # one trained table, copied back per block
    rows = {i for i in range(NULL + 1) if not torch.equal(tables[0][i], orig[i])}
    assert rows == {*CLASSES, NULL}  # Adam leaves rows that never get a gradient exactly as they were
    assert set(summary["memory_sizes"]["real"]) == set(CLASSES) == set(summary["memory_sizes"]["gen"])
    with pytest.raises(ValueError, match="class table"):
        run(setup, labels=setup.labels + 10)  # 13, 17: outside the 11-row table


def test_embedders_shared_while_training_and_saveable(setup, tmp_path):
    dit = load_dit(setup)
    tie_embedders(dit)
    assert len({id(b.norm1.emb) for b in dit.transformer_blocks}) == 1
    names = [k for k, p in dit.named_parameters() if "timestep_embedder" in k]
    assert len(names) == 4  # one linear_1/linear_2 weight+bias set, not one per block
    calls = []
    dit.transformer_blocks[0].norm1.emb.timestep_embedder.register_forward_hook(lambda *a: calls.append(1))
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([5, 900]), torch.tensor([3, NULL])
    with torch.no_grad():
        out = dit(x, timestep=t, class_labels=y).sample
        assert torch.equal(out, load_dit(setup)(x, timestep=t, class_labels=y).sample)  # identical copies tied
        assert len(calls) == 1  # evaluated once per forward, as the reference's single embedder
        dit.transformer_blocks[0].norm1.emb.timestep_embedder.linear_1.bias.add_(1.0)
        assert not torch.equal(out, dit(x, timestep=t, class_labels=y).sample)  # a changed weight is seen

    model, _ = run(setup)
    embs = [b.norm1.emb for b in model.transformer_blocks]
    assert embs[0] is not embs[1]
    assert all(torch.equal(v, embs[0].state_dict()[k]) for k, v in embs[1].state_dict().items())
    model.save_pretrained(tmp_path / "out")
    back = DiTTransformer2DModel.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        assert torch.equal(model(x, timestep=t, class_labels=y).sample, back(x, timestep=t, class_labels=y).sample)


def test_tie_warns_when_block_embedders_differ():
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match="embedders differ"):
        tie_embedders(DiTTransformer2DModel(**DIT))


# ----------------------------------------------------------------------------- memory terms


def test_no_memory_control_is_difffit_alone_bit_for_bit(setup, monkeypatch):
    """The study's control, method "difffit": both memory terms weighted 0, so every step's loss is the
    diffusion loss alone and the model equals DiffFit fine-tuning with the memory terms removed."""
    from divdistill.experiment.names import finetune_settings

    control = finetune_settings({"finetune": {}}, "difffit")
    assert control == {"lambda_real": 0.0, "lambda_gen": 0.0, "real_evict": "fifo", "gen_evict": "fifo"}
    logs = []
    with_terms, _ = run(setup, **control, on_step=logs.append)
    assert logs[-1]["loss_real"] > 0 and logs[-1]["loss_gen"] > 0  # the terms were computed, weighted by 0
    assert all(e["loss"] == e["loss_diff"] for e in logs)  # zero memory loss at every step
    monkeypatch.setattr(ft, "memory_loss", lambda *a, **k: (torch.zeros(()), {"loss_real": 0.0, "loss_gen": 0.0}))
    skipped, _ = run(setup, **control)
    assert_same_weights(with_terms, skipped)
    monkeypatch.undo()
    weighted, _ = run(setup, lambda_real=1.0, lambda_gen=1.0)  # and nonzero weights do move the model
    assert not torch.equal(weighted.proj_out_2.bias, skipped.proj_out_2.bias)


def test_memories_never_exceed_capacity(setup, monkeypatch):
    seen = []

    class Checked(Memory):
        def update(self, latents, labels):
            super().update(latents, labels)
            sizes = [len(self.get(c)) for c in self.classes()]
            assert max(sizes) <= self.capacity
            seen.append(max(sizes))

    monkeypatch.setattr(state, "Memory", Checked)  # where the run builds its memories
    _, summary = run(setup, memory_size=3)
    assert max(seen) == 3 and len(seen) == 2 * summary["steps"]
    assert all(n == 3 for part in summary["memory_sizes"].values() for n in part.values())


def test_max_eviction_keeps_a_more_diverse_gen_memory_than_fifo(setup):
    # lambdas 0: both runs see the same stream of z0 / z0_hat, so only the eviction rule differs
    # (margins at seeds 0-4: max ~-0.05, fifo ~+0.04, min ~+0.27 for the gen memory)
    sims = {e: run(setup, epochs=4, lambda_real=0.0, lambda_gen=0.0, real_evict=e, gen_evict=e)[1]
            for e in ("max", "fifo", "min")}
    for mem in ("sim_gen", "sim_real"):
        assert sims["max"][mem] < sims["fifo"][mem] < sims["min"][mem], mem


def test_methods():
    evict = lambda m: methods.get(m).evict  # noqa: E731
    assert evict("ours") == ("max", "max") and evict("minimax") == ("fifo", "fifo")
    assert evict("difffit") == ("fifo", "fifo")  # kept and logged; its terms are weighted 0
    assert evict("realmin-genmax") == ("min", "max")
    # Table 3's four cells: every (real, gen) pair of min/max, (max, max) being "ours"
    table3 = ("realmin-genmin", "realmin-genmax", "realmax-genmin", "ours")
    assert {evict(m) for m in table3} == {(r, g) for r in ("min", "max") for g in ("min", "max")}
    # a job's settings carry its method's evictions, a variant's too
    cfg = {"finetune": {"lambda_gen": 0.008, "threads": 2}}
    assert finetune_settings(cfg, "realmin-genmax-lambda_gen-0.032") == {
        "lambda_gen": 0.032, "real_evict": "min", "gen_evict": "max"}
    for bad in ("dit", "nope"):
        with pytest.raises(ValueError):
            finetune_settings(cfg, bad)


# ----------------------------------------------------------------------------- reproducibility


def test_same_seed_same_weights(setup):
    a, _ = run(setup, seed=3)
    b, _ = run(setup, seed=3)
    c, _ = run(setup, seed=4)
    assert_same_weights(a, b)
    assert not torch.equal(a.proj_out_2.bias, c.proj_out_2.bias)


class Crash(Exception):
    pass


def test_resume_after_crash_is_bit_identical(setup, tmp_path):
    full, _ = run(setup, checkpoint_every=5, checkpoint_dir=tmp_path / "a")

    def crash(log):
        if log["step"] == 7:  # mid-epoch 2, two steps after the checkpoint at 5: those are redone
            raise Crash

    with pytest.raises(Crash):
        run(setup, checkpoint_every=5, checkpoint_dir=tmp_path / "b", on_step=crash)
    kb = keyed(tmp_path / "b")
    assert load_checkpoint(kb)["step"] == 5
    (kb / ".tmp-killed-while-writing").mkdir()  # leftovers of kills are ignored, then removed
    (kb / "step-00000099").mkdir()  # no files (never renamed in whole by us): set aside as damaged
    resumed, summary = run(setup, checkpoint_every=5, checkpoint_dir=tmp_path / "b")  # fresh model objects
    assert summary["resumed_from"] == 5
    assert_same_weights(full, resumed)
    assert_same_checkpoint(load_checkpoint(keyed(tmp_path / "a")), load_checkpoint(kb))
    # the newest and its fallback; the empty one set aside, never deleted
    assert sorted(p.name for p in kb.iterdir()) == ["damaged-step-00000099", "step-00000010", "step-00000012"]

    again, summary = run(setup, checkpoint_every=5, checkpoint_dir=tmp_path / "a")  # finished: nothing to do
    assert summary["resumed_from"] == 12
    assert_same_weights(full, again)


@pytest.mark.parametrize("damage", ["truncated tensors", "broken state.json", "both checkpoints"])
def test_a_damaged_newest_checkpoint_falls_back_and_the_job_finishes(setup, tmp_path, capsys, damage):
    """A job killed after two checkpoints (5 and 10) whose newest one is then damaged: the rerun sets it
    aside (named in the log, not deleted), resumes from the one before (or, with both damaged, starts
    fresh), finishes, and equals an uninterrupted run bit for bit."""
    full, _ = run(setup, checkpoint_every=5)

    def crash(log):
        if log["step"] == 11:
            raise Crash

    with pytest.raises(Crash):
        run(setup, checkpoint_every=5, checkpoint_dir=tmp_path, on_step=crash)
    root = keyed(tmp_path)
    newest, previous = root / "step-00000010", root / "step-00000005"
    broken = [newest, previous] if damage == "both checkpoints" else [newest]
    for d in broken:
        if damage == "broken state.json":
            (d / "state.json").write_text((d / "state.json").read_text()[:-40])
        else:
            tensors = d / "tensors.safetensors"
            tensors.write_bytes(tensors.read_bytes()[:-1000])
    capsys.readouterr()
    resumed, summary = run(setup, checkpoint_every=5, checkpoint_dir=tmp_path)
    err = capsys.readouterr().err
    for d in broken:
        assert f"checkpoints: {d} is damaged" in err and f"set aside as {root / ('damaged-' + d.name)}" in err
    assert summary["resumed_from"] == (None if damage == "both checkpoints" else 5)
    if damage == "both checkpoints":
        assert "none for this configuration" in err and "starting fresh" in err
    assert_same_weights(full, resumed)
    assert all((root / f"damaged-{d.name}").is_dir() for d in broken)  # kept for the user to look at


def test_changed_setting_starts_fresh_beside_the_old_checkpoint(setup, tmp_path, capsys):
    """A researcher changes lambda_gen (or the seed) and reruns: the finished checkpoint of the old value
    is neither resumed nor in the way. The new value trains from step 0 into a folder of its own, equals
    a run without checkpoints, and the old value's folder still resumes at its end."""
    old, _ = run(setup, checkpoint_dir=tmp_path)
    capsys.readouterr()
    new, summary = run(setup, lambda_gen=0.5, checkpoint_dir=tmp_path)
    assert summary["resumed_from"] is None
    assert "starting fresh (1 other configuration(s) kept beside it)" in capsys.readouterr().err
    assert_same_weights(new, run(setup, lambda_gen=0.5)[0])
    assert not all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    assert len([d for d in tmp_path.iterdir() if d.is_dir()]) == 2
    back, summary = run(setup, checkpoint_dir=tmp_path)  # the old value again: its finished state
    assert summary["resumed_from"] == summary["steps"]
    assert_same_weights(old, back)
    _, summary = run(setup, seed=1, checkpoint_dir=tmp_path)
    assert summary["resumed_from"] is None


def test_a_checkpoint_folder_of_another_configuration_is_named_in_the_error(setup, tmp_path):
    run(setup, checkpoint_dir=tmp_path / "a")
    run(setup, seed=1, max_steps=1, checkpoint_dir=tmp_path / "b")
    theirs, ours = keyed(tmp_path / "a"), keyed(tmp_path / "b")
    shutil.rmtree(ours)
    shutil.copytree(theirs, ours)  # copied by hand under the other configuration's key
    with pytest.raises(ValueError, match=rf"checkpoint {ours} holds another configuration \(differs in seed\)"):
        run(setup, seed=1, checkpoint_dir=tmp_path / "b")


def test_max_steps_then_extend_equals_one_run(setup, tmp_path):
    full, _ = run(setup)
    _, first = run(setup, max_steps=5, checkpoint_dir=tmp_path)  # a demo-length cap, mid-epoch
    assert first["steps"] == 5 and load_checkpoint(keyed(tmp_path))["step"] == 5
    extended, summary = run(setup, checkpoint_dir=tmp_path)  # the cap lifted: the same step sequence goes on
    assert summary["resumed_from"] == 5
    assert_same_weights(full, extended)


SCRIPT = """
import os, signal, sys, torch
from diffusers import DDPMScheduler, DiTTransformer2DModel
from divdistill.generator.latents import load_latent_cache
from divdistill.method.finetune import FinetuneConfig, finetune
torch.set_num_threads(1)
dit_dir, cache_path, ckpt, kill_at, out = sys.argv[1:]
cache, _ = load_latent_cache(cache_path)
labels = torch.tensor({labels})

def hook(log):
    if log["step"] == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)

cfg = FinetuneConfig(**{base}, checkpoint_every=1)
model, _ = finetune(DiTTransformer2DModel.from_pretrained(dit_dir), cache, labels, {null},
                    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"), cfg, 0,
                    checkpoint_dir=ckpt, on_step=hook, progress=False)
model.save_pretrained(out)
"""


def test_sigkill_and_resume_in_subprocesses(setup, tmp_path):
    s = setup
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT).format(labels=s.labels.tolist(), base=BASE, null=NULL))

    def launch(name, kill_at):
        return subprocess.Popen([sys.executable, str(script), str(s.dit_dir), str(s.root / "cache.safetensors"),
                                 str(tmp_path / name / "ckpt"), str(kill_at), str(tmp_path / name / "model")],
                                stderr=subprocess.PIPE, text=True)

    procs = {"full": launch("full", -1), "killed": launch("killed", 8)}  # both at once: 2 cores
    errs = {k: p.communicate()[1] for k, p in procs.items()}
    assert procs["full"].returncode == 0, errs["full"]
    assert procs["killed"].returncode == -signal.SIGKILL, errs["killed"]
    assert load_checkpoint(keyed(tmp_path / "killed" / "ckpt"))["step"] == 8
    assert not (tmp_path / "killed" / "model").exists()
    resumed = launch("killed", -1)
    assert resumed.wait() == 0, resumed.stderr.read()

    assert_same_checkpoint(load_checkpoint(keyed(tmp_path / "full" / "ckpt")),
                           load_checkpoint(keyed(tmp_path / "killed" / "ckpt")))
    assert_same_weights(DiTTransformer2DModel.from_pretrained(tmp_path / "full" / "model"),
                        DiTTransformer2DModel.from_pretrained(tmp_path / "killed" / "model"))


def test_memory_of_size_one_logs_no_nan_similarity(setup):
    """One latent per class memory has no pairs: its similarity is undefined (None), never logged as nan."""
    import math

    logs = []
    _, summary = run(setup, memory_size=1, on_step=logs.append)
    values = [v for log in logs for v in log.values() if isinstance(v, float)]
    assert values and all(math.isfinite(v) for v in values)
    assert summary["sim_real"] is None and summary["sim_gen"] is None
    assert all(log.get("sim_gen") is None for log in logs)
