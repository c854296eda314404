"""Atomic file output: a job's result either exists complete or not at all.

Every writer goes through a temporary file in the destination folder and an
``os.replace``, so a killed job never leaves a partial file that Snakemake or a
reader could take as complete.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file

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


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """safetensors file with string metadata (JSON-encoded values)."""
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


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
# rerun). So that a finished result is never lost to a rerun that then fails, every job copies its
# finished output into the history folder, one entry per MLflow run: results/history/<output>/<run id>.
# A real copy (a reflink where the file system shares blocks, else bytes), never a hard link: a write
# into the live file in place (an editor, a careless `>`) must not reach the kept one.

HISTORY_ENV = "DIVDISTILL_HISTORY"  # the history folder; set by the Snakefile, unset: nothing is kept
_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks (btrfs, XFS); copy-on-write keeps them apart


def copy_file(src, dst) -> None:
    """``dst`` becomes an independent copy of ``src`` (a reflink where possible), with its times."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
        except OSError:  # not supported here (ext4, tmpfs, another file system): the bytes
            shutil.copyfileobj(fin, fout, 1 << 20)
    shutil.copystat(src, dst)


def keep(path, version: str) -> Path | None:
    """Copy the finished output ``path`` (file or folder) to ``$DIVDISTILL_HISTORY/<path>/<version>``
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
            copy_file(src, target)
    return dest
