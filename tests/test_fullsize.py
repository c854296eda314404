"""The paper's generator at its published sizes (generator/architectures.py): the parameter counts the
architecture implies, checked on small DiTs here and at DiT-XL/2 size through benchmarks/gpu.sh's
short mode, which runs the paper path's code at real size on the CPU (benchmarks/fullsize.py)."""

import json
import subprocess
import sys

import pytest
from diffusers import DiTTransformer2DModel

from divdistill.generator.architectures import DIT_XL_2_256, difffit_trainable, dit_parameters
from divdistill.generator.embedders import tie_embedders
from divdistill.method.difffit import apply_difffit, count_trainable

from .conftest import ROOT, project_env


@pytest.mark.parametrize("layers, heads, dim, classes", [(2, 2, 8, 10), (4, 3, 16, 7)])
def test_parameter_counts_by_hand_match_a_built_dit(layers, heads, dim, classes):
    cfg = {**DIT_XL_2_256, "num_layers": layers, "num_attention_heads": heads, "attention_head_dim": dim,
           "num_embeds_ada_norm": classes, "sample_size": 8}
    dit = DiTTransformer2DModel(**cfg)
    for b in dit.transformer_blocks[1:]:
        b.norm1.emb.load_state_dict(dit.transformer_blocks[0].norm1.emb.state_dict())
    tie_embedders(dit)
    assert sum(p.numel() for p in {id(p): p for p in dit.parameters()}.values()) == dit_parameters(cfg)
    apply_difffit(dit)
    assert count_trainable(dit)["total"] == difffit_trainable(cfg)


def test_dit_xl2_counts_are_the_published_ones():
    # DiT's models.py DiT-XL/2 holds 675,129,632 parameters, 294,912 of them its fixed 256 x 1152
    # position table (diffusers keeps that as a buffer)
    assert dit_parameters() == 675_129_632 - 256 * 1152


@pytest.mark.slow
def test_gpu_script_short_mode_runs_the_paper_path_at_real_size_on_the_cpu(tmp_path):
    out = tmp_path / "fullsize.json"
    p = subprocess.run(["bash", "benchmarks/gpu.sh", "--short", "--json", str(out), "--peak-tflops", "0.2"], cwd=ROOT,
                       env={**project_env(), "PYTHON": sys.executable}, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["dit_parameters"] == dit_parameters() and res["trainable"] == difffit_trainable()
    for key in ("finetune_s_per_step", "sample_s", "decode_s", "convnet_s_per_step", "resnetap10_s_per_step",
                "resnet18_s_per_step"):
        assert 0 < res[key] < 1800, key
    assert res["peak_gb"] > 3  # the 675M-parameter model was really built
    assert "| fine-tuning step (batch 8, memories full) |" in p.stdout
    # ratios against a made-up 0.2 TFLOP/s peak: benchmarks/cost.py's FLOP counts reach them
    assert set(res["of_limit"]) >= {"finetune_steps_per_s", "sample_images_per_s_at_50_steps", "resnet18_images_per_s"}
    assert all(0 < v < 100 for v in res["of_limit"].values())
