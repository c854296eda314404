"""Resumable jobs: checkpoints that are complete before they count, and a fallback when one is damaged.

A checkpoint is a directory ``root/step-<n>``: every tensor of the (nested) state in one safetensors
file, everything else (step, config fingerprints, optimiser hyper-parameters) as JSON, so loading one
never unpickles anything. It is written to a temp directory, checked to read back (the safetensors
header and length, the JSON), and renamed into place; only then is the one before the previous dropped,
so the two newest are always on disk. A newest checkpoint that does not read (a truncated file, a
broken JSON) is set aside as ``root/damaged-step-<n>`` (never deleted) with a log line naming it, and
the job resumes from the one before, or starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .read import safetensors_damage

_TENSORS, _SKELETON = "tensors.safetensors", "state.json"
_T, _TUPLE = "__tensor__", "__tuple__"
_STEP_DIR = re.compile(r"step-(\d+)")
KEEP = 2  # checkpoints kept: the newest and the one it falls back to
_DAMAGED = "damaged-"  # prefix of a checkpoint set aside


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


def _checkpoints(root: Path, complete: bool = True) -> list[tuple[int, Path]]:
    """Checkpoints (step, dir), oldest first; with ``complete``, only those holding both files (only whole
    directories are ever renamed in: one missing a file was damaged afterwards, and ``load_checkpoint``
    sets it aside)."""
    found = []
    for d in root.glob("step-*") if root.is_dir() else []:
        if (m := _STEP_DIR.fullmatch(d.name)) and (not complete or ((d / _TENSORS).is_file()
                                                                   and (d / _SKELETON).is_file())):
            found.append((int(m.group(1)), d))
    return sorted(found)


def _sync(folder: Path) -> None:
    """The folder's files and the folder itself (its entries) on disk, not only in the page cache."""
    for f in folder.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _damage(d: Path) -> str | None:
    """Why checkpoint ``d`` would not load (header and length of its tensors, its JSON); None if whole."""
    for name in (_TENSORS, _SKELETON):
        if not (d / name).is_file():
            return f"{name} missing"
    if damage := safetensors_damage(d / _TENSORS):
        return f"{_TENSORS}: {damage}"
    try:
        json.loads((d / _SKELETON).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        return f"{_SKELETON}: not valid JSON ({e})"
    return None


def save_checkpoint(root, state: dict) -> Path:
    """Write ``root/step-<state['step']>`` atomically (temp dir, read back, rename), then drop all but
    the ``KEEP`` newest."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors, "s")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    save_file(tensors, str(tmp / _TENSORS))
    (tmp / _SKELETON).write_text(json.dumps(skeleton))
    _sync(tmp)
    if damage := _damage(tmp):  # a full disk, a failing device: keep the previous checkpoints as they are
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(f"checkpoint for step {state['step']} in {root} did not read back: {damage}")
    final = root / f"step-{state['step']:08d}"
    if final.exists():  # the same step written again (a finished run asked to finish again)
        shutil.rmtree(final)
    tmp.rename(final)
    _sync(root)
    # Older complete checkpoints beyond the fallback, and leftovers of runs killed while writing, are
    # superseded (a damaged one is left for load_checkpoint to set aside, never deleted here).
    complete = _checkpoints(root)
    for d in [*(d for _, d in complete[:-KEEP]), *root.glob(".tmp-*")]:
        shutil.rmtree(d, ignore_errors=True)
    return final


def load_checkpoint(root, log=None) -> dict | None:
    """The newest checkpoint under ``root`` that reads, as a nested dict (tensors on the CPU); None if
    none does. Each one that does not is set aside as ``damaged-step-<n>`` and logged."""
    log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
    for _, d in reversed(_checkpoints(Path(root), complete=False)):
        damage = _damage(d)
        if damage is None:
            try:
                return _join(json.loads((d / _SKELETON).read_text()), load_file(str(d / _TENSORS)))
            except (SafetensorError, ValueError, KeyError, TypeError, IndexError) as e:
                damage = f"unreadable ({type(e).__name__}: {e})"  # a header that parses over data that does not
        aside = d.with_name(f"{_DAMAGED}{d.name}")
        if aside.exists():
            shutil.rmtree(aside)  # an older copy of the same step set aside before: this one replaces it
        d.rename(aside)
        log(f"checkpoints: {d} is damaged ({damage}): set aside as {aside}; trying the one before")
    return None


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
        ck = load_checkpoint(self.dir, self.log)
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
        """Drop this configuration's checkpoints (a finished job whose result is written); checkpoints set
        aside as damaged stay, and are named."""
        aside = sorted(self.dir.glob(f"{_DAMAGED}*"))
        if aside:
            for d in self.dir.iterdir():
                if d not in aside:
                    shutil.rmtree(d, ignore_errors=True)
            self.log(f"checkpoints: kept {len(aside)} damaged checkpoint(s) set aside in {self.dir} "
                     "(delete them when no longer needed)")
            return
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.dir.parent.rmdir()  # only when no other configuration's folder is left
        except OSError:
            pass


class Resumable:
    """The one resume rule of every training loop (pretraining, fine-tuning, evaluation): where it starts,
    when it saves, and what it leaves when done.

        run = Resumable(root, identity, every=100, total=steps, keep_final=True)
        start = run.start(restore)                   # restore(state) of the newest readable checkpoint
        for step in range(start, total):
            ...
            run.step_done(step + 1, lambda: {...})   # saved every ``every`` steps (and at ``total``
        run.finish()                                 # when ``keep_final``); else cleared at the end

    ``keep_final``: the last checkpoint stays, so a finished configuration asked again returns at once
    (pretraining, fine-tuning); without it the caller writes the result and the checkpoints go
    (evaluation). ``root`` None: no checkpoints at all.
    """

    def __init__(self, root, identity: dict, every: int, total: int, keep_final: bool, log=None):
        self.ckpts = None if root is None else Checkpoints(root, identity, log)
        self.every, self.total, self.keep_final = every, total, keep_final

    def start(self, restore) -> int:
        """The step to continue after: the newest readable checkpoint's (``restore`` gets its state), or 0."""
        ck = self.ckpts.load() if self.ckpts is not None else None
        if ck is None:
            return 0
        restore(ck)
        return ck["step"]

    def step_done(self, step: int, state) -> None:
        """``step`` steps are done: save ``{"step": step, **state()}`` when due."""
        if self.ckpts is None:
            return
        due = bool(self.every) and step % self.every == 0
        if (due and step < self.total) or (step == self.total and self.keep_final):
            self.ckpts.save({**state(), "step": step})

    def finish(self) -> None:
        if self.ckpts is not None and not self.keep_final:
            self.ckpts.clear()  # done: the caller writes the result
