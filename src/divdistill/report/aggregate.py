"""Per-seed evaluation results -> per-cell aggregates, and the files built from them alone: the
metrics tree for ``dvc metrics``, the learning curves, Figure 4's points, and the table cells that
tracking/parents.py files as MLflow parent runs."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..evaluate.protocols import HARD
from ..experiment.grid import ipc_label, parse_ipc, sweep_cells, table_cells
from ..io import atomic_path

KEY = ("dataset", "method", "ipc", "model", "protocol")  # an aggregate's key, a table cell's MLflow tags


def cell_key(c: dict) -> tuple:
    """A result's cell as an aggregate key: its ipc read back from the file's text ("10", "all"); results
    written before the protocol axis are hard's."""
    return (c["dataset"], c["method"], parse_ipc(c["ipc"]), c["model"], c.get("protocol", HARD))


def aggregate(results: list[dict]) -> dict[tuple, dict]:
    """(dataset, method, ipc, model, protocol) -> mean/std of final and best-over-training accuracy (%),
    the per-run final accuracies (``values``, %) and run ids, both in (distill_seed, seed) order."""
    groups = defaultdict(list)
    for r in results:
        groups[cell_key(r["cell"])].append(r)
    out = {}
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: (r["cell"]["distill_seed"], r["cell"]["seed"]))
        final = np.array([100 * r["test_acc"] for r in rs])
        best = np.array([100 * r["best_test_acc"] for r in rs])
        loss = np.array([r["curve"][-1]["train_loss"] if r.get("curve") else np.nan for r in rs])
        ddof = 1 if len(rs) > 1 else 0  # sample std over seeds
        out[key] = {
            "mean": float(final.mean()), "std": float(final.std(ddof=ddof)),
            "best_mean": float(best.mean()), "best_std": float(best.std(ddof=ddof)),
            # the final epoch's training loss: did the test network converge on this set?
            "loss_mean": float(loss.mean()) if np.isfinite(loss).all() else None,
            "values": final.tolist(), "n": len(rs),
            "seeds": [(r["cell"]["distill_seed"], r["cell"]["seed"]) for r in rs],
            "run_ids": [r["run_id"] for r in rs],
        }
    return out


def _key(c) -> tuple:
    return (c.dataset, c.method, c.ipc, c.model, c.protocol)


def parent_cells(cfg: dict, agg: dict, compared: list[dict] = (), scores: list[dict] = ()) -> list[dict]:
    """Every table cell that has runs, in the shape ``tracking.nest_seed_runs`` takes; the first table
    holding a cell names its parent run (Figure 4's sweep cells: "figure4"). ``compared``
    (compare.comparisons) adds each comparison's vs_<other>_* metrics to its first method's cell,
    ``scores`` (robust.scores) the method's LRS / ARS to its hard cell."""
    from .compare import parent_metrics
    from .robust import parent_metrics as score_metrics

    tables: dict[tuple, list[str]] = {}
    cells = [(table, c) for table in cfg["tables"] for c in table_cells(cfg, table)]
    cells += [("figure4", c) for c in sweep_cells(cfg)]
    for table, c in cells:
        names = tables.setdefault(_key(c), [])
        if table not in names:
            names.append(table)
    out = []
    for key, names in tables.items():
        a = agg.get(key)
        if a is None:
            continue
        d, m, ipc, model, protocol = key
        out.append({"name": f"{names[0]}/{d}/{m}/ipc{ipc_label(ipc)}/{model}/{protocol}",
                    "tags": {**dict(zip(KEY, key)), "ipc": ipc_label(ipc),  # MLflow tags are text
                             "table": names[0], "tables": ",".join(names)},
                    "metrics": {**{k: a[k] for k in ("mean", "std", "best_mean", "best_std", "n")},
                                **parent_metrics(compared, *key),
                                **(score_metrics(scores, d, m, ipc, model) if protocol == HARD else {})},
                    "run_ids": a["run_ids"]})
    return out


def metrics_tree(cfg: dict, agg: dict) -> dict:
    """Nested table -> dataset -> method -> ipc -> model -> protocol -> {mean, std}: for `dvc metrics`."""
    tree = {}
    for table in cfg["tables"]:
        for c in table_cells(cfg, table):
            a = agg.get(_key(c))
            if a is not None:
                node = tree.setdefault(table, {}).setdefault(c.dataset, {}).setdefault(c.method, {})
                node.setdefault(f"ipc{ipc_label(c.ipc)}", {}).setdefault(c.model, {})[c.protocol] = {
                    "mean": round(a["mean"], 3), "std": round(a["std"], 3),
                    **({"train_loss": round(a["loss_mean"], 4)} if a["loss_mean"] is not None else {})}
    return tree


def write_curves(results: list[dict], out_dir) -> None:
    """One CSV per (dataset, method, ipc, model, protocol): seed-mean curves at the evaluated epochs."""
    groups = defaultdict(list)
    for r in results:
        d, m, ipc, model, protocol = cell_key(r["cell"])
        groups[f"{d}-{m}-ipc{ipc_label(ipc)}-{model}-{protocol}"].append(r["curve"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, curves in sorted(groups.items()):
        by_epoch = defaultdict(list)
        for curve in curves:
            for row in curve:
                if row.get("test_acc") is not None:
                    by_epoch[row["epoch"]].append(row)
        with atomic_path(out_dir / f"{name}.csv") as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "train_loss", "test_acc"])
            for epoch, rs in sorted(by_epoch.items()):
                w.writerow([epoch, round(float(np.mean([r["train_loss"] for r in rs])), 5),
                            round(100 * float(np.mean([r["test_acc"] for r in rs])), 3)])


def write_sweeps(series: dict, out_dir) -> None:
    """Figure 4's points for DVC: one CSV per (hyper-parameter, IPC), rows value, test_acc, std, seeds."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, by_ipc in series.items():
        for ipc, points in by_ipc.items():
            with atomic_path(out_dir / f"{key}-ipc{ipc_label(ipc)}.csv") as tmp, open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["value", "test_acc", "test_acc_std", "seeds"])
                w.writerows([value, round(mean, 3), round(std, 3), n] for value, mean, std, n in points)
