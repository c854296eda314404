"""Every rendered number's evidence: the render job records which result files each table cell was made
from and their sha256 (``results/evidence.json``); ``divdistill verify`` (``make verify``) checks them
again and names each cell whose evidence is gone or changed since, with the command that rebuilds it.

Snakemake alone does not notice: after a finished run, a deleted evaluation JSON is "Nothing to be
done" (the tables that were made from it exist and are newer than everything that still exists).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..experiment.grid import ipc_label, sweep_cells, table_cells
from ..io import DamagedFile, read_json, sha256_file

REBUILD = "snakemake --cores 2 --forcerun parents render -- all"  # missing inputs are made again first


def _groups(cfg: dict) -> dict[str, dict[str, list[str]]]:
    """{table: {"dataset/method/ipc/model/protocol": [result paths]}}; Figure 4's sweep cells as "figure4"."""
    out: dict[str, dict[str, list[str]]] = {}
    pairs = [(table, c) for table in cfg["tables"] for c in table_cells(cfg, table)]
    pairs += [("figure4", c) for c in sweep_cells(cfg)]
    for table, c in pairs:
        cell = f"{c.dataset}/{c.method}/{ipc_label(c.ipc)}/{c.model}/{c.protocol}"
        paths = out.setdefault(table, {}).setdefault(cell, [])
        if c.path not in paths:
            paths.append(c.path)
    return out


def evidence(cfg: dict, diversity_paths=()) -> dict:
    """What the rendered tables were made from: each cell's result files and the diversity measures,
    every one with its sha256 (read now, at render time)."""
    def entry(path):
        return {"path": str(path), "sha256": sha256_file(path)}

    return {"tables": {table: {cell: [entry(p) for p in paths] for cell, paths in cells.items()}
                       for table, cells in _groups(cfg).items()},
            "diversity": [entry(p) for p in diversity_paths]}


def problems(record: dict) -> list[tuple[str, Path, str]]:
    """(where, file, "missing" or "changed") for each result file behind a rendered cell that is gone or
    differs from what was rendered."""
    out = []
    rows = [(f"{table} {cell.replace('/', ' / ')}", files) for table, cells in record["tables"].items()
            for cell, files in cells.items()]
    rows += [("diversity table", record.get("diversity", []))]
    for where, files in rows:
        for f in files:
            path = Path(f["path"])
            if not path.is_file():
                out.append((where, path, "missing"))
            elif sha256_file(path) != f["sha256"]:
                out.append((where, path, "changed"))
    return out


def verify(evidence_path) -> tuple[bool, str]:
    """(all evidence present and unchanged, the report to print)."""
    path = Path(evidence_path)
    if not path.is_file():
        return False, f"{path} does not exist: the tables were never rendered here (run: snakemake --cores 2 all)"
    record = read_json(path, todo=f"re-render the tables: {REBUILD}")
    if not isinstance(record, dict) or not isinstance(record.get("tables"), dict) or "diversity" not in record:
        raise DamagedFile(path, "not a render job's record (no tables and diversity)", f"re-render the tables: {REBUILD}")
    found = problems(record)
    n_cells = sum(len(cells) for cells in record["tables"].values())
    n_files = sum(len(f) for cells in record["tables"].values() for f in cells.values()) + len(record["diversity"])
    if not found:
        return True, f"{path}: {n_cells} table cells, {n_files} result files: every one present and unchanged"
    changed = sorted({str(p) for _, p, what in found if what == "changed"})
    fix = (f"rm -f -- {' '.join(shlex.quote(p) for p in changed)} && " if changed else "") + REBUILD
    say = {"missing": "is missing", "changed": "changed since the tables were rendered"}
    return False, "\n".join([f"{path}: {len(found)} result file(s) behind the rendered tables are missing or changed:",
                             *(f"  {where}: {p} {say[what]}" for where, p, what in found),
                             f"rebuild them and the tables with:\n  {fix}"])
