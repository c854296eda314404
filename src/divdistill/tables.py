"""Tables from evaluation results: mean ± std over seeds, methods in the paper's order.

Every cell is aggregated from the per-seed JSON files that evaluation jobs write
(each names its MLflow run), so every printed number traces back to runs.
"""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from .config import COLUMN_ORDER, FULL_IPC, METHOD_ORDER, SYNTHESIS_METHODS, table_cells
from .io import atomic_path, read_json, write_json, write_text
from .reported import METHOD_CITATIONS, SOURCES, reported

METHOD_LABELS = {
    "random": "Random", "kcenter": "K-Center", "herding": "Herding", "dit": "DiT", "dm": "DM",
    "idc-1": "IDC-1", "minimax": "Minimax", "ours": "Ours", "full": "Full",
    "realmin-genmin": "real min / gen min", "realmin-genmax": "real min / gen max",
    "realmax-genmin": "real max / gen min",
}
MODEL_LABELS = {"convnet": "ConvNet", "resnetap10": "ResNetAP-10", "resnet18": "ResNet-18"}
TABLE_TITLES = {
    "table1": "Table 1: comparison with baselines",
    "table2": "Table 2: further datasets",
    "table3": "Table 3: ablation of the eviction strategies (real memory / generative memory; Ours = max / max)",
}


def aggregate(results: list[dict]) -> dict[tuple, dict]:
    """(dataset, method, ipc, model) -> mean/std of final and best-over-training accuracy (%)."""
    groups = defaultdict(list)
    for r in results:
        c = r["cell"]
        groups[(c["dataset"], c["method"], str(c["ipc"]), c["model"])].append(r)
    out = {}
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: (r["cell"]["distill_seed"], r["cell"]["seed"]))
        final = np.array([100 * r["test_acc"] for r in rs])
        best = np.array([100 * r["best_test_acc"] for r in rs])
        ddof = 1 if len(rs) > 1 else 0  # sample std over seeds
        out[key] = {
            "mean": float(final.mean()), "std": float(final.std(ddof=ddof)),
            "best_mean": float(best.mean()), "best_std": float(best.std(ddof=ddof)),
            "n": len(rs), "seeds": [(r["cell"]["distill_seed"], r["cell"]["seed"]) for r in rs],
            "run_ids": [r["run_id"] for r in rs],
        }
    return out


REPORTED_MARK = "†"


def _layout(cfg: dict, table: str):
    """Rows (dataset, ipc, model) and columns (method, is_reported) of one table, in the paper's order:
    a method's published numbers sit right after our run of it."""
    t = cfg["tables"][table]
    columns = []
    for m in COLUMN_ORDER:
        if m in t["methods"]:
            columns.append((m, False))
        if m in t.get("reported", []):
            columns.append((m, True))
    rows = [(d, str(ipc), model) for d in t["datasets"] for ipc in cfg["ipc"] for model in t["models"]]
    return rows, columns


def _label(column) -> str:
    m, is_reported = column
    return METHOD_LABELS[m] + (f" (reported){REPORTED_MARK}" if is_reported else "")


def _reported_value(d, m, ipc, model, key: str):
    """A published figure in the shape of an aggregate (best-over-training rows show it too: the
    sources report that figure)."""
    r = reported(d, m, model, ipc)
    if r is None:
        return None
    return {"mean": r[0], "std": r[1], "best_mean": r[0], "best_std": r[1], "source": r[2]}


def _footnotes(cfg: dict, table: str) -> list[str]:
    """Citations of the reported columns, and which rows no source covers."""
    rows, columns = _layout(cfg, table)
    notes = []
    for m, is_reported in columns:
        if not is_reported:
            continue
        found = {_reported_value(d, m, ipc, model, "mean")["source"]
                 for d, ipc, model in rows if _reported_value(d, m, ipc, model, "mean")}
        missing = sorted({f"{d} / {MODEL_LABELS[model]}" for d, ipc, model in rows
                          if _reported_value(d, m, ipc, model, "mean") is None})
        text = f"{REPORTED_MARK} {METHOD_LABELS[m]} (reported): published numbers, not re-run here"
        if m in METHOD_CITATIONS:
            text += f" (method: {METHOD_CITATIONS[m]})"
        if found:
            text += "; source: " + "; ".join(SOURCES[s] for s in sorted(found))
        if missing:
            text += f". No published {METHOD_LABELS[m]} figure exists for " + ", ".join(missing) + " (–)"
        notes.append(text + ".")
    return notes


def _runs_per_cell(cfg: dict) -> str:
    n, d = len(cfg["seeds"]), len(cfg.get("distill_seeds", [0]))
    return f"{n} seeds" if d == 1 else f"{n} seeds (× {d} distillation seeds for fine-tuned methods)"


def _cell(agg, d, column, ipc, model):
    m, is_reported = column if isinstance(column, tuple) else (column, False)
    if is_reported:
        return _reported_value(d, m, ipc, model, "mean")
    # Full does not depend on IPC: the same measurement is shown on every row.
    return agg.get((d, m, FULL_IPC if m == "full" else ipc, model))


def _fmt(a, key: str) -> str:
    if a is None:
        return "–"
    std = a[key.replace("mean", "std")]
    return f"{a[key]:.1f}" if std is None else f"{a[key]:.1f} ± {std:.1f}"


def render_markdown(cfg: dict, table: str, agg: dict) -> str:
    rows, columns = _layout(cfg, table)
    head = ["Dataset", "IPC", "Test model"] + [_label(c) for c in columns]

    def grid(key):
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(columns)]
        for d, ipc, model in rows:
            vals = [_fmt(_cell(agg, d, c, ipc, model), key) for c in columns]
            lines.append(f"| {d} | {ipc} | {MODEL_LABELS[model]} | " + " | ".join(vals) + " |")
        return lines

    out = [f"# {TABLE_TITLES[table]}", "",
           f"Top-1 test accuracy (%) at the **final epoch**, mean ± sample std over {_runs_per_cell(cfg)} "
           "(each seed re-draws the distilled set and re-trains the test network).", ""]
    out += grid("mean")
    out += ["", "Best test accuracy over training (model selection on the test set, as the public "
            "reference code reports it; shown for comparison only, not the headline):", ""]
    out += grid("best_mean")
    out += ["", "Full: the whole training set of the dataset, the same figure on every IPC row."]
    out += [""] + _footnotes(cfg, table) if _footnotes(cfg, table) else []
    return "\n".join(out) + "\n"


def render_latex(cfg: dict, table: str, agg: dict) -> str:
    rows, columns = _layout(cfg, table)
    cols = "lll" + "c" * len(columns)
    head = " & ".join(["Dataset", "IPC", "Test model"]
                      + [_label(c).replace(REPORTED_MARK, r"$^\dagger$") for c in columns])
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{TABLE_TITLES[table]}. Final-epoch top-1 test accuracy (\%), mean $\pm$ std "
             rf"over {_runs_per_cell(cfg)}.}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head + r" \\", r"\midrule"]
    for d, ipc, model in rows:
        vals = []
        for c in columns:
            a = _cell(agg, d, c, ipc, model)
            vals.append("--" if a is None else f"${a['mean']:.1f}$" if a["std"] is None
                        else f"${a['mean']:.1f} \\pm {a['std']:.1f}$")
        lines.append(" & ".join([d, ipc, MODEL_LABELS[model]] + vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\footnotesize " + n.replace(REPORTED_MARK, r"$^\dagger$") for n in _footnotes(cfg, table)]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


def metrics_tree(cfg: dict, agg: dict) -> dict:
    """Nested table -> dataset -> method -> ipc -> model -> {mean, std}: for `dvc metrics`."""
    tree = {}
    for table in cfg["tables"]:
        for c in table_cells(cfg, table):
            a = agg.get((c.dataset, c.method, c.ipc, c.model))
            if a is not None:
                node = tree.setdefault(table, {}).setdefault(c.dataset, {}).setdefault(c.method, {})
                node.setdefault(f"ipc{c.ipc}", {})[c.model] = {"mean": round(a["mean"], 3), "std": round(a["std"], 3)}
    return tree


def write_curves(results: list[dict], out_dir) -> None:
    """One CSV per (dataset, method, ipc, model): seed-mean curves at the evaluated epochs."""
    groups = defaultdict(list)
    for r in results:
        c = r["cell"]
        groups[f"{c['dataset']}-{c['method']}-ipc{c['ipc']}-{c['model']}"].append(r["curve"])
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


def render_diversity(cfg: dict, diversity: list[dict]) -> str:
    """Beside Table 1: within-class latent similarity and coverage of each method's distilled sets."""
    groups = defaultdict(list)
    for r in diversity:
        for ipc, m in r["ipc"].items():
            groups[(r["dataset"], r["method"], ipc)].append(m)
    # DM optimises one set per IPC (not nested prefixes): its sets are not measured here
    methods = [m for m in METHOD_ORDER if m in cfg["tables"]["table1"]["methods"]
               and m != "full" and m not in SYNTHESIS_METHODS]
    out = ["# Diversity and coverage of the distilled sets (Table 1's datasets)", "",
           "Measured on VAE latents (posterior means), mean ± sample std over the distilled sets "
           "(seeds × distillation seeds). **Similarity**: mean pairwise cosine similarity of a class's "
           "latents, averaged over classes (lower = more diverse). **Coverage** (%): share of real training "
           "latents with a same-class distilled latent closer than the class's median real "
           "nearest-neighbour distance (higher = more of the class represented).", ""]
    for key, title, scale in (("similarity", "Within-class similarity", 1), ("coverage", "Coverage (%)", 100)):
        out += [f"## {title}", "", "| Dataset | IPC | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |",
                "|---|---|" + "---:|" * len(methods)]
        for d in cfg["tables"]["table1"]["datasets"]:
            for ipc in cfg["ipc"]:
                vals = []
                for m in methods:
                    xs = np.array([scale * v[key] for v in groups.get((d, m, str(ipc)), [])])
                    ddof = 1 if len(xs) > 1 else 0
                    vals.append("–" if len(xs) == 0 else f"{xs.mean():.3g} ± {xs.std(ddof=ddof):.2g}")
                out.append(f"| {d} | {ipc} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out)


def render_all(cfg: dict, result_paths: list[str], out_tables, out_metrics, out_plots,
               diversity_paths: list[str] = (), grids: dict | None = None, out_figures="reports/figures") -> dict:
    results = [read_json(p) for p in result_paths]
    agg = aggregate(results)
    for table in cfg["tables"]:
        write_text(Path(out_tables) / f"{table}.md", render_markdown(cfg, table, agg))
        write_text(Path(out_tables) / f"{table}.tex", render_latex(cfg, table, agg))
    write_text(Path(out_tables) / "diversity.md", render_diversity(cfg, [read_json(p) for p in diversity_paths]))
    for src, dst in (grids or {}).items():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    write_curves(results, out_plots)
    if cfg.get("sweeps"):
        from .figures import figure4

        figure4(cfg, agg, Path(out_figures) / "figure4.png", Path(out_figures) / "figure4.pdf")
    tree = metrics_tree(cfg, agg)
    write_json(out_metrics, tree)
    return tree
