"""Atomic file output: a job's result either exists complete or not at all.

Every writer goes through a temporary file in the destination folder and an
``os.replace``, so a killed job never leaves a partial file that Snakemake or a
reader could take as complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """safetensors file with string metadata (JSON-encoded values)."""
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def load_tensors(path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return load_file(str(path)), meta


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- checkpoints
# A checkpoint is a directory ``root/step-<n>``: every tensor of the (nested) state in one
# safetensors file, everything else (step, config fingerprints, optimiser hyper-parameters) as JSON,
# so loading one never unpickles anything. Written to a temp directory and renamed into place.

_TENSORS, _SKELETON = "tensors.safetensors", "state.json"
_T, _TUPLE = "__tensor__", "__tuple__"
_STEP_DIR = re.compile(r"step-(\d+)")


def _split(obj, tensors: dict, path: str):
    """Nested state -> JSON-able skeleton with {_T: key} in place of each tensor, tensors[key] = CPU copy."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {_T: path}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"checkpoint keys must be str or int at {path}")
        # JSON keys are strings: int keys (optimiser state ids) are tagged to come back as ints
        return {(f"#int:{k}" if isinstance(k, int) else k): _split(v, tensors, f"{path}/{k}") for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {_TUPLE: [_split(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_split(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"cannot checkpoint {type(obj).__name__} at {path}")


def _join(obj, tensors: dict):
    if isinstance(obj, dict):
        if set(obj) == {_T}:
            return tensors[obj[_T]]
        if set(obj) == {_TUPLE}:
            return tuple(_join(v, tensors) for v in obj[_TUPLE])
        return {(int(k[5:]) if k.startswith("#int:") else k): _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def _checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (step, dir), oldest first. Only whole directories are ever renamed in."""
    found = []
    for d in root.glob("step-*") if root.is_dir() else []:
        if (m := _STEP_DIR.fullmatch(d.name)) and (d / _TENSORS).is_file() and (d / _SKELETON).is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def save_checkpoint(root, state: dict) -> Path:
    """Write ``root/step-<state['step']>`` atomically (temp dir + rename), then drop older ones."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors, "s")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    save_file(tensors, str(tmp / _TENSORS))
    (tmp / _SKELETON).write_text(json.dumps(skeleton))
    final = root / f"step-{state['step']:08d}"
    if final.exists():  # the same step written again (a finished run asked to finish again)
        shutil.rmtree(final)
    tmp.rename(final)
    # Older checkpoints, and leftovers of runs killed while writing or deleting, are superseded.
    for d in [*root.glob("step-*"), *root.glob(".tmp-*")]:
        if d != final:
            shutil.rmtree(d, ignore_errors=True)
    return final


def load_checkpoint(root) -> dict | None:
    """The newest complete checkpoint under ``root`` as a nested dict (tensors on the CPU); None if none."""
    found = _checkpoints(Path(root))
    if not found:
        return None
    d = found[-1][1]
    return _join(json.loads((d / _SKELETON).read_text()), load_file(str(d / _TENSORS)))
