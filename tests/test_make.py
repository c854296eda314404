"""make demo on a machine without the demo's data: it installs Debian's dataset-fashion-mnist itself where
it can (root, or sudo without a password) and says so, and elsewhere stops with the command. apt-get, id
and sudo are fakes on PATH that record what they were asked."""

import os
import stat
import subprocess

import pytest

from .conftest import ROOT


def fake(bin_dir, name, body):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def machine(tmp_path):
    """A bin folder of fakes and the data file make demo expects (not there yet)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    target = tmp_path / "share" / "train-images-idx3-ubyte.gz"
    fake(bin_dir, "apt-get", f'echo "apt-get $*" >> "{calls}"\n'
                             f'case "$*" in *install*) mkdir -p "{target.parent}" && : > "{target}";; esac')
    return bin_dir, calls, target


def make_data(bin_dir, target, uid: str, sudo_ok: bool) -> subprocess.CompletedProcess:
    fake(bin_dir, "id", f'echo {uid}')
    fake(bin_dir, "sudo", f'[ "$1" = -n ] && shift; {"" if sudo_ok else "exit 1;"} "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["make", "--no-print-directory", f"FASHION={target}", str(target)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("uid, sudo_ok, how", [("0", False, "as root"), ("1000", True, "sudo -n")])
def test_make_demo_installs_the_data_where_it_may(machine, uid, sudo_ok, how):
    bin_dir, calls, target = machine
    p = make_data(bin_dir, target, uid, sudo_ok)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"installing Debian's dataset-fashion-mnist ({how}" in p.stdout
    assert calls.read_text().splitlines() == ["apt-get update -qq", "apt-get install -y -qq dataset-fashion-mnist"]
    assert target.exists()


def test_elsewhere_it_stops_with_the_command(machine):
    bin_dir, calls, target = machine
    p = make_data(bin_dir, target, "1000", sudo_ok=False)
    assert p.returncode != 0
    assert "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist" in p.stdout
    assert not calls.exists() and not target.exists()
