"""The paper-scale code path (ImageNet subsets, DiT-XL/2 and SD-VAE folders) without a GPU, a hub or ImageNet:
the full grid of config/paper.yaml planned (locally and through the Slurm profile), missing inputs named
before any job, and the whole DAG on a fake ImageNet tree with tiny randomly initialised diffusers models."""

import copy
import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from divdistill.experiment import config as dd
from divdistill.experiment import grid, jobsets, methods, names

from .conftest import FASHION, ROOT, needs_fashion, planned_jobs, run

pytestmark = pytest.mark.workflow  # Snakemake in a subprocess: not in make test-fast


def overlay(base: dict, over: dict) -> dict:
    """``over`` deep-merged onto ``base``, as Snakemake merges --configfile onto params.yaml (dicts merge,
    everything else is replaced)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def paper_config() -> dict:
    """What a job sees with ``--configfile config/paper.yaml``: params.yaml overlaid with the paper config."""
    return overlay(dd.load(ROOT / "params.yaml"), dd.load(ROOT / "config" / "paper.yaml"))


@pytest.fixture
def paper_project(project) -> Path:
    """The project copy plus the Slurm profile (conftest's copy_project leaves profiles/ out)."""
    shutil.copytree(ROOT / "profiles", project / "profiles", dirs_exist_ok=True)
    return project


# ----------------------------------------------------------------------------- planning


def test_paper_config_dry_run_enumerates_the_full_grid(paper_project):
    cfg = paper_config()
    n = len(grid.cells(cfg))
    # the paper config sets every section the grid reads: on its own it gives the same grid
    assert grid.cells(dd.load(ROOT / "config" / "paper.yaml")) == grid.cells(cfg)
    # every table cell (3 tables of ImageWoof/ImageNette/ImageIDC x 3 IPCs x 3 seeds: hundreds) is planned:
    # Table 1 (10 methods x 3 IPCs + Full, 3 test models) 279, Table 2 (6 methods, 2 datasets) 108,
    # Table 3 beyond Table 1's 27
    table_cells = {c for t in cfg["tables"] for c in grid.table_cells(cfg, t)}
    hard = {c for c in table_cells if c.protocol == "hard"}
    assert len(hard) == 414 and table_cells <= set(grid.cells(cfg))
    # every table under every protocol (Full, the upper bound, under hard only): 3 more of each other cell
    assert all(grid.protocols_of(cfg, t) == ["hard", "soft", "hard-noaug", "soft-noaug"] for t in cfg["tables"])
    assert len(table_cells) == len(hard) + 3 * sum(c.method != "full" for c in hard)
    # Ours as the paper's code weights the memory terms, beside Ours, in Tables 1 and 3
    assert {"ours", "ours-paper-code"} <= set(cfg["tables"]["table1"]["methods"]) & set(cfg["tables"]["table3"]["methods"])
    # MGD³ and D⁴M: training-free, a sampling job per IPC on the pretrained DiT
    assert {"mgd3", "d4m"} <= set(cfg["tables"]["table1"]["methods"]) & set(cfg["tables"]["table2"]["methods"])
    for cmd in (["snakemake", "--configfile", "config/paper.yaml", "-n", "all"],
                ["snakemake", "--profile", "profiles/slurm", "--configfile", "config/paper.yaml", "-n", "all"]):
        jobs = planned_jobs(run(cmd, paper_project, timeout=300).stdout)
        # Full's evaluations have a rule of their own (evaluate.seeds_full may give it fewer seeds)
        assert jobs["evaluate"] + jobs["evaluate_full"] == n, cmd
        assert jobs["evaluate_full"] == sum(c.method == "full" for c in grid.cells(cfg))
        # one soft-label teacher per (dataset, test network), whatever reads it
        assert jobs["teacher"] == len(grid.teachers(cfg)) == len({(c.dataset, c.model) for c in grid.cells(cfg)})
        # paper scale loads its generator: nothing is pretrained, each dataset is prepared and encoded once
        assert "pretrain_vae" not in jobs and "pretrain_dit" not in jobs
        assert jobs["prepare"] == jobs["encode"] == len(grid.datasets_used(cfg)) == 3
        assert jobs["finetune"] == len({(c.dataset, c.method, c.distill_seed) for c in grid.cells(cfg)
                                        if methods.get(names.base_method(c.method)).finetuned})
        assert jobs["sample_per_ipc"] == len({(c.dataset, c.method, c.ipc, c.distill_seed) for c in grid.cells(cfg)
                                              if c.method in ("mgd3", "d4m")})
        # experiment/jobsets.py lists the same upstream jobs (benchmarks/cost.py's counts)
        upstream = jobsets.upstream_jobs(cfg)
        assert {rule: len(keys) for rule, keys in upstream.items()} == {rule: jobs.get(rule, 0) for rule in upstream}
    assert not (paper_project / "results").exists() and not (paper_project / "mlflow.db").exists()


# ----------------------------------------------------------------------------- missing inputs


def test_missing_imagenet_and_weights_fail_before_any_job(paper_project, tmp_path):
    cfg = dd.load(ROOT / "config" / "paper.yaml")
    gone = tmp_path / "nowhere"
    cfg["data"]["imagenet_root"] = str(gone / "imagenet")
    cfg["generator"].update(dit=str(gone / "DiT-XL-2-256"), vae=str(gone / "sd-vae-ft-ema"),
                            vae_decoder=str(gone / "sd-vae-ft-mse"))
    (tmp_path / "missing.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    p = run(["snakemake", "--cores", "2", "all", "--configfile", str(tmp_path / "missing.yaml")], paper_project,
            check=False, timeout=300)
    elapsed = time.monotonic() - t0
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "missing inputs (nothing was run)" in out
    assert f"{gone / 'imagenet'}: root folder does not exist" in out and "https://image-net.org" in out
    for repo, folder in (("facebook/DiT-XL-2-256", "DiT-XL-2-256"), ("stabilityai/sd-vae-ft-ema", "sd-vae-ft-ema"),
                         ("stabilityai/sd-vae-ft-mse", "sd-vae-ft-mse")):
        assert f"{gone / folder}: does not exist" in out
        assert f"hf download {repo} --local-dir {gone / folder}" in out
    # one error for everything, before any job: nothing prepared, nothing evaluated, no job logs
    assert elapsed < 60, elapsed
    assert not (paper_project / "results").exists()
    assert not list(paper_project.glob("results/data/*/meta.json")) and not (paper_project / "results/eval").exists()


# ----------------------------------------------------------------------------- the whole DAG

WOOF_TRAIN, WOOF_VAL = 6, 3  # images per class in the fake ImageNet tree


def make_fake_imagenet(root: Path) -> Path:
    """<root>/{train,val}/<wnid>/*.JPEG for the 10 ImageWoof wnids: Fashion-MNIST images (class k -> the k-th
    wnid) enlarged to 256 x 256 RGB JPEGs, real pictures rather than noise."""
    from PIL import Image

    from divdistill.data.datasets import read_fashion
    from divdistill.data.registry import read_class_list

    wnids, _, _ = read_class_list("imagewoof")
    for folder, split, n in (("train", "train", WOOF_TRAIN), ("val", "test", WOOF_VAL)):
        images, labels = read_fashion(FASHION, split)  # (N, 1, 32, 32) uint8, (N,)
        for k, wnid in enumerate(wnids):
            d = root / folder / wnid
            d.mkdir(parents=True)
            for i, j in enumerate(np.flatnonzero(labels == k)[:n]):
                img = Image.fromarray(images[j, 0]).resize((256, 256), Image.BICUBIC).convert("RGB")
                img.save(d / f"{wnid}_{i}.JPEG", "JPEG", quality=90)
    return root


def make_tiny_weights(root: Path) -> dict[str, str]:
    """Randomly initialised stand-ins in the published layouts: a DiT-XL/2-256-shaped pipeline root
    (learned variance, 1000 classes, 32 x 32 latents of 256 px images) and two SD-VAE-shaped folders
    (4 blocks: factor 8, 4 latent channels, scaling factor 0.18215)."""
    import torch
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    torch.manual_seed(0)
    dit = DiTTransformer2DModel(in_channels=4, out_channels=8, sample_size=32, patch_size=4, num_layers=1,
                                num_attention_heads=2, attention_head_dim=8, num_embeds_ada_norm=1000,
                                norm_type="ada_norm_zero")
    dit.save_pretrained(root / "DiT-XL-2-256" / "transformer")
    (root / "DiT-XL-2-256" / "model_index.json").write_text(json.dumps({"_class_name": "DiTPipeline"}))
    paths = {"dit": str(root / "DiT-XL-2-256")}
    for role, name in (("vae", "sd-vae-ft-ema"), ("vae_decoder", "sd-vae-ft-mse")):
        vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
                            norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, sample_size=256, scaling_factor=0.18215)
        vae.save_pretrained(root / name)
        paths[role] = str(root / name)
    return paths


TABLE1_RUN = ["random", "kcenter", "herding", "dit", "dm", "minimax", "ours", "ours-paper-code", "full"]
IPC = 2


def tiny_paper_config(imagenet_root: Path, weights: dict[str, str]) -> dict:
    """config/paper.yaml (over params.yaml, whose pretrain section the schema requires) shrunk to CPU
    seconds per job, keeping what makes it paper scale: an ImageNet subset, loaded (not pretrained)
    generator folders, 256 px images evaluated at 224 px."""
    cfg = paper_config()
    cfg.update(seeds=[0], distill_seeds=[0], ipc=[IPC])
    cfg.pop("sweeps", None)  # Figure 4's hyper-parameter sweeps: Table 1 alone here
    cfg["data"].update(imagenet_root=str(imagenet_root), imagenet_layout="imagenet", train_per_class=None,
                       test_per_class=None)
    cfg["generator"].update(pretrain=False, **weights)
    cfg["finetune"].update(epochs=1, max_steps=4, batch_size=4, memory_size=2, checkpoint_every=2, threads=1)
    cfg["sample"].update(steps=2, threads=1)  # guidance 4.0 on the first 3 latent channels, as the paper
    cfg["samplers"]["mode_guidance"]["stop_t"] = 0  # 2 steps: MGD³'s pull at the first (respaced index 1)
    cfg["baselines"]["features"].update(width=8, depth=2, epochs=1, batch_size=16)
    cfg["synthesis"]["dm"].update(iterations=2, batch_real=4, width=8, depth=2)
    cfg["baselines"]["threads"] = 1
    cfg["tables"] = {"table1": {"datasets": ["imagewoof"], "methods": TABLE1_RUN, "reported": ["idc-1", "minimax"],
                                "models": ["convnet"], "protocols": ["hard", "soft"]}}  # the teacher at 224 px too
    ev = cfg["evaluate"]
    assert ev["resolution"] == 224  # the paper path: resize + centre crop of the stored 256 px images
    ev.update(batch_size=16, eval_every=1, epochs=[{"max_ipc": 10, "epochs": 2}], epochs_full=1,
              nets={"convnet": {"width": 8, "depth": 3}}, threads=1)
    ev["soft"].update(epochs=[{"max_ipc": 10, "epochs": 2}], batch_size=16)
    return cfg


@needs_fashion
@pytest.mark.slow
def test_paper_scale_dag_end_to_end_on_fake_imagenet(project, tmp_path_factory):
    import torch
    from mlflow.tracking import MlflowClient

    from divdistill.io import load_tensors

    imagenet = make_fake_imagenet(tmp_path_factory.mktemp("imagenet"))
    weights = make_tiny_weights(tmp_path_factory.mktemp("weights"))
    cfg = tiny_paper_config(imagenet, weights)
    # Snakemake merges a --configfile onto params.yaml (tables included): replace params.yaml itself
    (project / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert dd.missing_inputs(cfg) == []
    cells = grid.cells(cfg)
    assert len(cells) == 2 * len(TABLE1_RUN) - 1  # hard and soft; Full under hard only

    t0 = time.monotonic()
    run(["snakemake", "--cores", "2", "all"], project, timeout=900)
    print(f"paper-scale DAG on the fake ImageNet: {time.monotonic() - t0:.0f} s")

    # the table: a number for every method we run, the published columns marked (IDC-1's ImageWoof figures
    # are for ResNetAP-10 only, so the ConvNet row shows a dash)
    md = (project / "reports" / "tables" / "table1.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Protocol | Dataset"))
    row = next(line for line in md.splitlines() if line.startswith(f"| hard | imagewoof | {IPC} | ConvNet |"))
    soft = next(line for line in md.splitlines() if line.startswith(f"| soft | imagewoof | {IPC} | ConvNet |"))
    assert soft.count("±") == len(TABLE1_RUN) - 1  # every method under soft labels but Full
    cols = [c.strip() for c in header.strip("|").split("|")]
    vals = dict(zip(cols, (v.strip() for v in row.strip("|").split("|"))))
    for label in ("Random", "K-Center", "Herding", "DiT", "DM", "Minimax", "Ours", "Ours (paper code)", "Full"):
        # mean ± std, possibly bold (best of the row) and, on Ours, starred (Welch p < 0.05)
        assert re.fullmatch(r"(\*\*)?\d+\.\d ± \d+\.\d(\*\*)?(\\\*)?", vals[label]), (label, vals[label])
    assert vals["IDC-1 (reported)†"] == "–" and vals["Minimax (reported)†"] == "–"
    assert cols.index("IDC-1 (reported)†") == cols.index("DM") + 1
    assert (project / "reports" / "tables" / "table1.tex").exists()
    assert (project / "reports" / "tables" / "diversity.md").exists()
    for m in ("dit", "minimax", "ours"):
        assert (project / "reports" / "figures" / f"samples-imagewoof-{m}.png").exists()

    # the prepared subset: ImageNet-1K labels, 256 px RGB, every image of the tree
    meta = json.loads((project / "results" / "data" / "imagewoof" / "meta.json").read_text())
    assert meta["labels"] == [193, 182, 258, 162, 155, 167, 159, 273, 207, 229]
    assert meta["resolution"] == 256 and meta["test_split"] == "ImageNet val"
    # generated distilled sets: IPC images per class, decoded to 256 px uint8 RGB by the SD-VAE stand-in
    for m in ("dit", "minimax", "ours"):
        t, _ = load_tensors(project / "results" / "distilled" / "imagewoof" / m / "distill0-seed0.safetensors")
        assert t["images"].dtype == torch.uint8
        assert tuple(t["images"].shape) == (10 * IPC, 3, 256, 256), (m, t["images"].shape)
        assert sorted(t["labels"].tolist()) == sorted(list(range(10)) * IPC)
    for c in cells:
        res = json.loads((project / c.path).read_text())
        assert 0.0 <= res["test_acc"] <= 1.0 and res["params"]["resolution"] == 224

    # every stage tracked in its experiment, every run finished
    client = MlflowClient(tracking_uri=f"sqlite:///{project}/mlflow.db")
    prefix = cfg["mlflow"]["experiment_prefix"]
    expected = {"prepare": 1, "features": 1, "select": 3, "synthesize": 1, "finetune": 3, "sample": 4, "diversity": 7,
                "evaluate": len(cells), "pretrain": 0}
    for stage, n in expected.items():
        exp = client.get_experiment_by_name(f"{prefix}-{stage}")
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        assert all(r.info.status == "FINISHED" for r in runs), (stage, [r.info.status for r in runs])
        if stage == "evaluate":  # the render job's parent runs: one per table cell, seed runs nested
            parents = [r for r in runs if r.data.tags.get("divdistill.parent") == "1"]
            teachers = [r for r in runs if r.data.tags.get("role") == "teacher"]  # the soft labels' teacher
            runs = [r for r in runs if r.data.tags.get("divdistill.parent") != "1" and r not in teachers]
            assert len(parents) == len({(c.method, c.ipc, c.protocol) for c in cells}) and len(teachers) == 1
            assert all(r.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents} for r in runs)
        assert len(runs) == n, (stage, len(runs), n)
        if stage == "finetune":
            for r in runs:
                assert {"loss_diff", "loss_real", "loss_gen", "sim_real", "sim_gen"} <= set(r.data.metrics)
            weighting = {r.data.params["method"]: r.data.params["memory_weighting"] for r in runs}
            assert weighting == {"minimax": "eq6", "ours": "eq6", "ours-paper-code": "paper_code"}
    failed = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                filter_string="attributes.status != 'FINISHED'", max_results=1000)
    assert failed == []
    default = client.get_experiment_by_name("Default")
    assert default is None or not client.search_runs([default.experiment_id])


def test_the_cost_model_runs_on_the_paper_grid():
    """benchmarks/cost.py reads the grid and the name table as the workflow does (a variant's base
    method, Full's own rule): it must run through on config/paper.yaml."""
    p = run([sys.executable, "benchmarks/cost.py", "--no-snakemake"], ROOT, timeout=300)
    assert "Share of GPU-hours" in p.stdout and "| **total** |" in p.stdout
