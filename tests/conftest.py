import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Every Snakemake start asks Slurm for its configuration (the Slurm plugin); without a cluster that
# waits ~9 s, with this one it fails at once (profiles/slurm/no-cluster.conf). The Slurm tests set their own.
os.environ["SLURM_CONF"] = str(ROOT / "profiles" / "slurm" / "no-cluster.conf")
FASHION = Path("/usr/share/datasets/fashion-mnist")
BIN = str(Path(sys.executable).parent)

needs_fashion = pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST missing: apt-get install -y dataset-fashion-mnist",
)


def project_env() -> dict:
    """Environment for subprocesses: this venv's scripts (divdistill, snakemake) first."""
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    return env


def run(cmd, cwd, env=None, check=True, timeout=900, **kw) -> subprocess.CompletedProcess:
    """A command in ``cwd`` with this venv's scripts first (``env``: another environment, e.g. a Slurm
    cluster's); with ``check``, a non-zero exit fails the test with the output's end."""
    p = subprocess.run(cmd, cwd=cwd, env=project_env() if env is None else env, capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def planned_jobs(out: str) -> dict[str, int]:
    """Job counts by rule from a Snakemake dry run's "Job stats" table."""
    table = out[out.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def use_config(project: Path, name: str) -> dict:
    """Make config/<name>.yaml the project's params.yaml (what DVC and a bare snakemake read)."""
    from divdistill.experiment import config as dd

    shutil.copy(project / "config" / f"{name}.yaml", project / "params.yaml")
    return dd.load(project / "params.yaml")


def copy_project(dest: Path) -> Path:
    """A fresh copy of what a clone holds that the workflow needs (no results, no mlflow.db)."""
    for name in ("Snakefile", "params.yaml", "dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("workflow", "config", "src", "profiles"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def new_project(path: Path, cfg: dict) -> Path:
    """A fresh project folder at ``path`` (created) whose params.yaml is ``cfg``."""
    path.mkdir()
    copy_project(path)
    (path / "params.yaml").write_text(yaml.safe_dump(cfg))
    return path


def keyed(root) -> Path:
    """The one configuration folder under a checkpoint root (io.Checkpoints keys them by configuration)."""
    folders = [d for d in Path(root).iterdir() if d.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


# make test's two workers take whole files in collection order (Makefile: --dist loadfile
# --no-loadscope-reorder): the longest first, so that neither worker is left with one at the end.
LONGEST_FIRST = ("test_smoke_dag.py", "test_slurm.py", "test_faults.py", "test_trust.py", "test_workflow.py",
                 "test_paper_scale.py", "test_fullsize.py", "test_new_classes.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order otherwise kept


def pytest_configure(config):
    """Under make test's two workers on two cores, each worker's own torch work takes one thread (two
    threads each would oversubscribe the cores; the jobs the tests start set their own)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: a second thread only adds OpenMP overhead, and on a shared machine a lot of it."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# A tiny learned-variance DiT (4 latent channels of 8 x 8, 10 classes + the null label 10).
TINY_DIT = dict(sample_size=8, in_channels=4, out_channels=8, patch_size=2, num_layers=2, num_attention_heads=2,
                attention_head_dim=8, num_embeds_ada_norm=10, norm_type="ada_norm_zero")


@pytest.fixture(scope="module")
def dit():
    """TINY_DIT with every weight random: diffusers zero-inits parts of DiT, and every output channel
    must matter to the samplers' tests."""
    import torch
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    m = DiTTransformer2DModel(**TINY_DIT).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)
    return m


@pytest.fixture
def project(tmp_path) -> Path:
    return copy_project(tmp_path)
