"""Atomic file output: a job's result either exists complete or not at all.

Every writer goes through a temporary file in the destination folder and an
``os.replace``, so a killed job never leaves a partial file that Snakemake or a
reader could take as complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
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


# ----------------------------------------------------------------------------- history
# Snakemake deletes a job's old output before it runs the job again (a changed parameter, a forced
# rerun). So that a finished result is never lost to a rerun that then fails, every job hard-links its
# finished output into the history folder, one entry per MLflow run: results/history/<output>/<run id>.
# Hard links cost no space while the output is current; the entry keeps the data once it is replaced.

HISTORY_ENV = "DIVDISTILL_HISTORY"  # the history folder; set by the Snakefile, unset: nothing is kept


def keep(path, version: str) -> Path | None:
    """Hard-link the finished output ``path`` (file or folder) to ``$DIVDISTILL_HISTORY/<path>/<version>``
    (a leading ``results/`` dropped from ``path``); returns the entry, or None without a history folder."""
    root = os.environ.get(HISTORY_ENV)
    if not root:
        return None
    path = Path(path)
    rel = Path(os.path.relpath(path.resolve(), Path.cwd().resolve()))
    if rel.parts and rel.parts[0] in ("..", "results"):
        rel = Path(*rel.parts[1:]) if rel.parts[0] == "results" else Path(path.name)
    dest = Path(root) / rel / f"{version}{path.suffix if path.is_file() else ''}"
    with atomic_dir(dest) if path.is_dir() else atomic_path(dest) as tmp:
        sources = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for src in sources:
            target = tmp / src.relative_to(path) if path.is_dir() else tmp
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(src, target)
            except OSError:  # another file system: a copy
                shutil.copy2(src, target)
    return dest


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


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over the tensors' dtypes, shapes and bytes: names the data a job trained on."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")
    return h.hexdigest()


class Checkpoints:
    """The checkpoints of one job, keyed by its configuration: ``root/<key>/step-<n>``.

    ``identity`` is everything the remaining steps depend on (configuration, seed, a digest of the
    data and of the starting weights); its hash names the folder. A job whose configuration changed
    therefore finds a folder of its own: it starts fresh (and says so) instead of resuming, or being
    blocked by, another configuration's state, and that state stays where it was, so changing the
    value back resumes it. One rule for every job type (pretraining, fine-tuning, evaluation).
    """

    def __init__(self, root, identity: dict, log=None):
        self.identity = json.dumps(identity, sort_keys=True, default=str)  # compared as written
        self.key = hashlib.sha256(self.identity.encode()).hexdigest()[:16]
        self.dir = Path(root) / self.key
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))

    def load(self) -> dict | None:
        """The newest checkpoint of this configuration, or None (logged either way)."""
        ck = load_checkpoint(self.dir)
        if ck is None:
            others = [d.name for d in self.dir.parent.glob("*") if d.is_dir() and d != self.dir]
            note = f" ({len(others)} other configuration(s) kept beside it)" if others else ""
            self.log(f"checkpoints: none for this configuration in {self.dir}: starting fresh{note}")
            return None
        if ck.get("identity") != self.identity:  # a folder copied or edited by hand
            ours, theirs = json.loads(self.identity), json.loads(ck.get("identity") or "{}")
            diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            raise ValueError(f"checkpoint {self.dir} holds another configuration (differs in {', '.join(diff)}): "
                             f"delete {self.dir} to start this one fresh")
        self.log(f"checkpoints: resuming from {self.dir} at step {ck['step']}")
        return ck

    def save(self, state: dict) -> Path:
        return save_checkpoint(self.dir, {**state, "identity": self.identity})

    def clear(self) -> None:
        """Drop this configuration's checkpoints (a finished job whose result is written)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.dir.parent.rmdir()  # only when no other configuration's folder is left
        except OSError:
            pass
