"""Damaged files, as a careless user makes them: each is named with what is wrong and what to do, a kept
result cannot be damaged through its live copy, and configuration errors name file, line and key.
(A damaged checkpoint: tests/test_finetune.py; a damaged and a deleted result in a finished DAG, and
`divdistill verify`: tests/test_smoke_dag.py.)"""

import gzip
import json
import shutil

import pytest
import torch
import yaml

from divdistill.data.datasets import read_fashion
from divdistill.data.registry import FASHION_FILES, check_fashion_root
from divdistill.io import DamagedFile, keep, load_tensors, read_json, read_yaml, save_tensors, write_json
from divdistill.io.checkpoints import Checkpoints

from .conftest import FASHION, needs_fashion, run


# ----------------------------------------------------------------------------- kept results

def test_a_write_into_a_live_output_leaves_its_kept_copy_intact(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIVDISTILL_HISTORY", str(tmp_path / "results" / "history"))
    live = tmp_path / "results" / "eval" / "a.json"
    write_json(live, {"test_acc": 0.5})
    folder = tmp_path / "results" / "finetuned" / "m"
    save_tensors(folder / "w.safetensors", {"w": torch.arange(4.0)})
    kept, kept_folder = keep(live, "run1"), keep(folder, "run1")
    assert kept == tmp_path / "results/history/eval/a.json/run1.json"
    with open(live, "r+") as f:  # in place: the same inode, as an editor or `>>` would
        f.write("{")
    with open(folder / "w.safetensors", "r+b") as f:
        f.truncate(10)
    assert json.loads(kept.read_text()) == {"test_acc": 0.5}
    assert torch.equal(load_tensors(kept_folder / "w.safetensors")[0]["w"], torch.arange(4.0))
    assert kept.stat().st_ino != live.stat().st_ino


# ----------------------------------------------------------------------------- every kind of damage named

def test_a_damaged_json_names_path_line_and_column(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(DamagedFile, match=rf"^{path}:4:1: not valid JSON \(Expecting value\); delete it"):
        read_json(path)
    path.write_text("")
    with pytest.raises(DamagedFile, match=rf"^{path}: empty \(0 bytes\)"):
        read_json(path)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DamagedFile, match=rf"^{path}: not text"):
        read_json(path)


@pytest.mark.parametrize("cut", [4, 60, -3])
def test_a_damaged_safetensors_file_names_path_and_damage(tmp_path, cut):
    path = tmp_path / "set.safetensors"
    save_tensors(path, {"images": torch.zeros(10, 1, 8, 8, dtype=torch.uint8)}, {"ipc": 10})
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DamagedFile, match=rf"^{path}: truncated") as e:
        load_tensors(path)
    if cut == -3:
        assert f"({size - 3} of {size} bytes)" in str(e.value)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(DamagedFile, match=rf"^{path}: bad header"):
        load_tensors(path)


@pytest.fixture
def fashion_copy(tmp_path):
    for pair in FASHION_FILES.values():
        for name in pair:
            shutil.copy(FASHION / name, tmp_path / name)
    return tmp_path


@needs_fashion
@pytest.mark.parametrize("damage", ["truncated", "not gzip", "bad IDX header"])
def test_a_damaged_fashion_file_is_named_before_any_job_and_by_the_job(fashion_copy, damage):
    path = fashion_copy / FASHION_FILES["test"][0]
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "not gzip":
        path.write_bytes(gzip.decompress(raw))
    else:
        path.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + gzip.decompress(raw)[4:]))
    expected = {"truncated": "truncated gzip file", "not gzip": "not a gzip file",
                "bad IDX header": "bad IDX header"}[damage]
    problems = check_fashion_root(fashion_copy, read=True)  # onstart's check: before any job
    assert len(problems) == 1 and problems[0].startswith(f"{path}: {expected}"), problems
    assert "apt-get install --reinstall -y dataset-fashion-mnist" in problems[0]
    with pytest.raises(DamagedFile, match=rf"^{path}: {expected}"):  # and the job itself, run by hand
        read_fashion(fashion_copy, "test")
    assert check_fashion_root(FASHION, read=True) == []


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoints_keep_a_fallback_and_set_damaged_ones_aside(tmp_path):
    lines = []
    ck = Checkpoints(tmp_path, {"seed": 0}, log=lines.append)
    for step in (1, 2, 3):
        ck.save({"step": step, "w": torch.full((3,), float(step))})
    assert sorted(d.name for d in ck.dir.iterdir()) == ["step-00000002", "step-00000003"]
    (ck.dir / "step-00000003" / "tensors.safetensors").write_bytes(b"")
    state = ck.load()
    assert state["step"] == 2 and torch.equal(state["w"], torch.full((3,), 2.0))
    aside = ck.dir / "damaged-step-00000003"
    assert aside.is_dir() and any(f"set aside as {aside}" in line for line in lines)
    ck.save({"step": 3, "w": torch.full((3,), 3.0)})  # the job goes on: the set-aside one stays
    ck.clear()
    assert aside.is_dir() and "kept 1 damaged checkpoint(s)" in lines[-1]


# ----------------------------------------------------------------------------- configuration errors

def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seeds: [0, 1]\nevaluate:\n  lr: 0.01\n\tepochs: 3\n")
    with pytest.raises(DamagedFile, match=rf"^{path}:4:1: YAML syntax error: .*'\\t'"):
        read_yaml(path)


@pytest.mark.workflow
def test_config_errors_are_one_line_each_naming_the_file(project):
    text = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(text.replace("\nfinetune:", "\nfinetun:", 1))
    p = run(["snakemake", "-n", "all"], project, check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "params.yaml: unknown key 'finetun' (did you mean 'finetune'?)" in out
    assert "required property" not in out and "$defs" not in out and len(out.splitlines()) < 10, out
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("evaluate:"))
    lines.insert(at + 1, "\tlr: 0.1")  # a tab where YAML wants spaces, on line at + 2 (1-based)
    (project / "params.yaml").write_text("\n".join(lines) + "\n")
    p = run(["snakemake", "-n", "all"], project, check=False)
    assert p.returncode != 0 and f"params.yaml:{at + 2}:1: YAML syntax error" in p.stdout + p.stderr
    # an overlay (as --configfile gives one): `divdistill check` names its own file
    (project / "params.yaml").write_text(text)
    (project / "overlay.yaml").write_text(yaml.safe_dump({"evaluate": {"lrr": 0.1}}))
    p = run(["divdistill", "check", "--config", "params.yaml", "overlay.yaml"], project, check=False)
    assert p.returncode != 0
    assert "overlay.yaml: evaluate: unknown key 'lrr' (did you mean 'lr'?)" in p.stderr
    (project / "overlay.yaml").write_text("evaluate: {lr: 0.1\n")
    p = run(["divdistill", "check", "--config", "params.yaml", "overlay.yaml"], project, check=False)
    assert p.returncode != 0 and "overlay.yaml:2:1: YAML syntax error" in p.stderr
