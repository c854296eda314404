"""The one way the suite reads a file: a bad file is named, with what is wrong with it and what to do.

Every reader here raises :class:`DamagedFile` (a ``ValueError``) instead of the parser's own exception,
whose message names neither the file nor the damage (``Expecting ',' delimiter``, ``incomplete
metadata, file not fully covered``, ``Compressed file ended before the end-of-stream marker``)::

    results/eval/fashion-hard/ours/ipc10/convnet/distill0-seed0.json:3:1: not valid JSON (Expecting
    value); delete it and run the workflow again: the job that writes it runs again

The checks that need no full read (:func:`safetensors_damage`: the header and the file's length) also
run before any job, and on every checkpoint before the previous one is dropped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
import zlib
from pathlib import Path

import yaml

REBUILD = "delete it and run the workflow again: the job that writes it runs again"


class DamagedFile(ValueError):
    """A file that exists but cannot be read as what it should be."""

    def __init__(self, path, damage: str, todo: str = REBUILD):
        self.path, self.damage, self.todo = Path(path), damage, todo
        super().__init__(f"{path}: {damage}" + (f"; {todo}" if todo else ""))


def _exists(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file")
    return path


def read_json(path, todo: str = REBUILD):
    """A JSON file; damage is reported as ``path:line:column: not valid JSON (...)``."""
    path = _exists(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DamagedFile(path, f"not text (byte {e.start} is not UTF-8)", todo) from None
    if not text.strip():
        raise DamagedFile(path, f"empty ({path.stat().st_size} bytes)", todo)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DamagedFile(f"{path}:{e.lineno}:{e.colno}", f"not valid JSON ({e.msg})", todo) from None


def read_yaml(path, todo: str = "fix the file at that line"):
    """A YAML file; a syntax error is reported as ``path:line:column: <problem>`` (1-based, as editors count)."""
    path = _exists(path)
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(s) for s in (e.context, e.problem) if s)
        raise DamagedFile(where, f"YAML syntax error: {problem}", todo) from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DamagedFile(path, f"not valid YAML ({e})", todo) from None


# ----------------------------------------------------------------------------- safetensors
# Layout: an 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape,
# data_offsets: [begin, end]}, "__metadata__": {...}}), then the data; a complete file ends exactly
# where the last tensor does. So a truncated or foreign file is told from the header and the length.

def safetensors_damage(path) -> str | None:
    """What is wrong with a safetensors file, read from its header and length only; None if whole."""
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        return f"truncated ({size} bytes: not even the header's length)"
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            return f"truncated or not a safetensors file (header of {n} bytes announced, {size - 8} follow)"
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "bad header (not JSON): not a safetensors file, or overwritten"
    if not isinstance(header, dict):
        return "bad header (not a JSON object)"
    ends = []
    for k, v in header.items():
        if k == "__metadata__":
            continue
        offsets = v.get("data_offsets") if isinstance(v, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"bad header (tensor {k!r} has no [begin, end] data offsets)"
        ends.append(offsets[1])
    expected = 8 + n + max(ends, default=0)
    if size < expected:
        return f"truncated ({size} of {expected} bytes)"
    if size > expected:
        return f"{size - expected} bytes after the last tensor (two files written into one?)"
    return None


def load_tensors(path, todo: str = REBUILD) -> tuple[dict, dict]:
    """Every tensor of a safetensors file (name -> torch.Tensor) and its metadata (string values
    JSON-decoded)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = _exists(path)
    if damage := safetensors_damage(path):
        raise DamagedFile(path, damage, todo)
    try:

        with safe_open(str(path), framework="pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        return load_file(str(path)), meta
    except Exception as e:  # safetensors' SafetensorError, a bad dtype, metadata that is not JSON
        raise DamagedFile(path, f"unreadable safetensors file ({e})", todo) from None


# ----------------------------------------------------------------------------- gzip

def read_gzip(path, todo: str = REBUILD) -> bytes:
    """The whole decompressed content of a gzip file (its CRC checked by the read through)."""
    path = _exists(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic != b"\x1f\x8b":
        raise DamagedFile(path, f"not a gzip file (starts with {magic!r}, not b'\\x1f\\x8b')", todo)
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except EOFError:
        raise DamagedFile(path, f"truncated gzip file ({path.stat().st_size} bytes: "
                                "the compressed stream ends early)", todo) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DamagedFile(path, f"corrupt gzip file ({e})", todo) from None


def read_tsv(path, todo: str = REBUILD) -> list[dict[str, str]]:
    """The rows of a tab-separated file with a header line (Snakemake's benchmark records), as dicts."""
    path = _exists(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DamagedFile(path, f"not text (byte {e.start} is not UTF-8)", todo) from None
    if len(lines) < 2:
        raise DamagedFile(path, f"{len(lines)} line(s): a header and at least one row expected", todo)
    header = lines[0].split("\t")
    rows = [(i, line.split("\t")) for i, line in enumerate(lines[1:], start=2) if line.strip()]
    if not rows:
        raise DamagedFile(path, "a header and no row", todo)
    for i, row in rows:
        if len(row) != len(header):
            raise DamagedFile(f"{path}:{i}", f"{len(row)} fields where the header has {len(header)}", todo)
    return [dict(zip(header, row)) for _, row in rows]


def sha256_file(path) -> str:
    """The sha256 of a file's bytes (what a rendered table records of each of its inputs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
