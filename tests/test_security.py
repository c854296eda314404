"""Nothing is unpickled from disk, and the MLflow UI is offered to this machine only."""

import ast
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from divdistill.generator.weights import load_vae

from .conftest import ROOT, project_env


def unsafe_torch_loads(source: str) -> list[int]:
    """Lines of ``torch.load(...)`` calls without ``weights_only=True``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)
            if not safe:
                lines.append(node.lineno)
    return lines


def test_the_scanner_flags_an_unsafe_load():
    assert unsafe_torch_loads("import torch\nx = torch.load('a.pt')\ny = torch.load('b', weights_only=True)\n") == [2]
    assert unsafe_torch_loads("z = torch.load('c', weights_only=False)\n") == [1]


def test_no_torch_load_without_weights_only_in_the_code():
    files = [p for d in ("src", "workflow", "benchmarks", "tests") for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 20
    found = {str(p.relative_to(ROOT)): lines for p in files if (lines := unsafe_torch_loads(p.read_text()))}
    assert found == {}


def test_pickled_bin_weights_are_read_with_weights_only(tmp_path, monkeypatch):
    """A weights folder holding a pickled .bin (no safetensors) goes through torch.load(weights_only=True)."""
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), latent_channels=4,
                        norm_num_groups=4, sample_size=16)
    vae.save_pretrained(tmp_path / "vae", safe_serialization=False)
    assert (tmp_path / "vae" / "diffusion_pytorch_model.bin").exists()
    calls, real_load = [], torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_vae(tmp_path / "vae", "cpu", role="vae_encode", channels=1)
    assert calls == [True]
    assert torch.equal(loaded.state_dict()["encoder.conv_in.weight"], vae.state_dict()["encoder.conv_in.weight"])


def _other_address() -> str | None:
    """A non-loopback address of this machine, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: picks the outgoing interface, sends nothing
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@pytest.mark.slow
def test_make_ui_listens_on_loopback_only(tmp_path):
    port = _free_port()
    # outside make's own variables: under `make test` a nested make would add "Entering directory" lines
    env = {k: v for k, v in project_env().items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "--no-print-directory", "-n", "ui", f"UI_PORT={port}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    cmd = next(line for line in out.splitlines() if "mlflow ui" in line)
    assert "--host 127.0.0.1" in cmd and "0.0.0.0" not in cmd
    # start exactly that command (its relative .venv/bin path resolved) in an empty folder
    argv = cmd.split()
    argv[0] = str(Path(sys.executable).parent / Path(argv[0]).name)
    proc = subprocess.Popen(argv, cwd=tmp_path, env=project_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _answers("127.0.0.1", port):
            assert proc.poll() is None, "mlflow ui exited"
            assert time.monotonic() < deadline, "mlflow ui did not start"
            time.sleep(0.5)
        other = _other_address()
        if other is not None:
            assert not _answers(other, port), f"the UI answers on {other}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
