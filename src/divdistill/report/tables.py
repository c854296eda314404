"""Tables from evaluation results: mean ± std over seeds, methods in the paper's order.

Every cell is aggregated from the per-seed JSON files that evaluation jobs write
(each names its MLflow run), so every printed number traces back to runs: the HTML
tables name them, and with a tracking configuration ``render_all`` files each cell as
an MLflow parent run with its seed runs nested below.

Markdown, LaTeX and HTML show the same marks: **bold** is the best of a row among our
runs (Full, an upper bound, and published columns excluded) and ``*`` on Ours says the paired
t-test of Ours against Minimax (runs paired by seed, ``stats.paired``) gives p < 0.05; the notes
give that difference with its 95% CI and minimum detectable difference, and the comparisons table
(``compare.py``) every other headline comparison.
"""

from __future__ import annotations

import csv
import html
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..experiment.config import COLUMN_ORDER, FULL_IPC, METHOD_ORDER, SYNTHESIS_METHODS, seeds_for, sweep_cells, table_cells
from ..io import atomic_path, read_json, write_json, write_text
from ..baselines.reported import METHOD_CITATIONS, SOURCES, reported

METHOD_LABELS = {
    "random": "Random", "kcenter": "K-Center", "herding": "Herding", "dit": "DiT", "dm": "DM",
    "idc-1": "IDC-1", "difffit": "DiffFit (no memory)", "minimax": "Minimax", "ours": "Ours",
    "ours-paper-code": "Ours (paper code)", "full": "Full",
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
    """(dataset, method, ipc, model) -> mean/std of final and best-over-training accuracy (%), the
    per-run final accuracies (``values``, %) and run ids, both in (distill_seed, seed) order."""
    groups = defaultdict(list)
    for r in results:
        c = r["cell"]
        groups[(c["dataset"], c["method"], str(c["ipc"]), c["model"])].append(r)
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


def _reported_value(d, m, ipc, model):
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
        values = {(d, ipc, model): _reported_value(d, m, ipc, model) for d, ipc, model in rows}
        found = {v["source"] for v in values.values() if v}
        missing = sorted({f"{d} / {MODEL_LABELS[model]}" for (d, _, model), v in values.items() if v is None})
        text = f"{REPORTED_MARK} {METHOD_LABELS[m]} (reported): published numbers, not re-run here"
        if m in METHOD_CITATIONS:
            text += f" (method: {METHOD_CITATIONS[m]})"
        if found:
            text += "; source: " + "; ".join(SOURCES[s] for s in sorted(found))
        if missing:
            text += f". No published {METHOD_LABELS[m]} figure exists for " + ", ".join(missing) + " (–)"
        notes.append(text + ".")
    return notes


def _runs_per_cell(cfg: dict, table: str) -> str:
    n, d, n_full = len(cfg["seeds"]), len(cfg.get("distill_seeds", [0])), len(seeds_for(cfg, "full"))
    text = f"{n} seeds" if d == 1 else f"{n} seeds (× {d} distillation seeds for fine-tuned methods)"
    if n_full != n and "full" in cfg["tables"][table]["methods"]:
        text += f"; Full (an upper bound) over the first {n_full}"
    return text


def _cell(agg, d, column, ipc, model):
    m, is_reported = column if isinstance(column, tuple) else (column, False)
    if is_reported:
        return _reported_value(d, m, ipc, model)
    # Full does not depend on IPC: the same measurement is shown on every row.
    return agg.get(_key(d, m, ipc, model))


def _key(d, m, ipc, model) -> tuple:
    return (d, m, FULL_IPC if m == "full" else ipc, model)


def _fmt(a, key: str) -> str:
    if a is None:
        return "–"
    std = a[key.replace("mean", "std")]
    return f"{a[key]:.1f}" if std is None else f"{a[key]:.1f} ± {std:.1f}"


SIG_MARK, SIG_LEVEL = "*", 0.05  # on Ours' cell: paired t-test against Minimax


def _paired_rows(cfg: dict, table: str, agg: dict) -> dict[tuple, dict | None]:
    """Row -> the paired comparison Ours - Minimax (compare.comparisons' dict; None without runs on
    both sides); empty when the table lacks either method."""
    from .compare import comparisons, find

    if not {"ours", "minimax"} <= set(cfg["tables"][table]["methods"]):
        return {}
    rows, _ = _layout(cfg, table)
    found = comparisons({**cfg, "tables": {table: cfg["tables"][table]}}, agg)
    return {(d, ipc, model): find(found, table, d, ipc, model, "ours", "minimax") for d, ipc, model in rows}


def _ranked(column) -> bool:
    """Bold goes to the best of our runs: Full (an upper bound) and published figures are not ranked."""
    m, is_reported = column
    return not is_reported and m != "full"


def _grid(cfg: dict, table: str, agg: dict, key: str) -> list[tuple[tuple, list[dict]]]:
    """(row, cells) of one table: each cell's column, aggregate ``a`` (None: missing), ``best``
    (bold) and ``sig`` (the marker; headline grid only)."""
    rows, columns = _layout(cfg, table)
    tests = _paired_rows(cfg, table, agg) if key == "mean" else {}
    out = []
    for row in rows:
        d, ipc, model = row
        cells = [{"column": c, "key": _key(d, c[0], ipc, model), "a": _cell(agg, d, c, ipc, model)}
                 for c in columns]
        # compared as printed, so a displayed tie is bolded on both sides; a row where every ranked
        # cell ties shows no best
        shown = {i: round(c["a"][key], 1) for i, c in enumerate(cells) if c["a"] is not None and _ranked(c["column"])}
        top = max(shown.values()) if len(set(shown.values())) > 1 else None
        p = (tests.get(row) or {}).get("p")
        for i, c in enumerate(cells):
            c["best"] = top is not None and shown.get(i) == top
            c["sig"] = c["column"] == ("ours", False) and p is not None and p < SIG_LEVEL
        out.append((row, cells))
    return out


def _notes(cfg: dict, table: str, agg: dict, mark: str = SIG_MARK, lt: str = "<") -> list[str]:
    """What bold and the marker mean, the t-tests' p-values, then the reported columns' citations."""
    notes = ["Bold: the best of each row among our runs. Full (the whole training set, the "
             "same figure on every IPC row) is an upper bound and is not ranked; nor are published (reported) "
             "figures."]
    tests = _paired_rows(cfg, table, agg)
    if tests:
        from .compare import summary

        parts = []
        for (d, ipc, model), r in tests.items():
            where = f"{d} / IPC {ipc} / {MODEL_LABELS[model]}"
            parts.append(f"{where}: " + ("n/a" if r is None else summary(r, METHOD_LABELS)
                                         + (mark if r["p"] is not None and r["p"] < SIG_LEVEL else "")))
        notes.append(f"{mark} on Ours: the paired t-test of Ours against Minimax (runs paired by evaluation "
                     f"seed: same network initialisation, augmentation and sampling noise) gives p {lt} "
                     f"{SIG_LEVEL} (not corrected for multiple comparisons). MDD: the smallest difference the "
                     "comparison would detect with 80% power at alpha 0.05; comparisons.md has the others. "
                     + "; ".join(parts) + ".")
    return notes + _footnotes(cfg, table)


def render_markdown(cfg: dict, table: str, agg: dict) -> str:
    rows, columns = _layout(cfg, table)
    head = ["Dataset", "IPC", "Test model"] + [_label(c) for c in columns]

    def text(c, key):
        t = _fmt(c["a"], key)
        return (f"**{t}**" if c["best"] else t) + ("\\" + SIG_MARK if c["sig"] else "")

    def grid(key):
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(columns)]
        for (d, ipc, model), cells in _grid(cfg, table, agg, key):
            lines.append(f"| {d} | {ipc} | {MODEL_LABELS[model]} | " + " | ".join(text(c, key) for c in cells) + " |")
        return lines

    out = [f"# {TABLE_TITLES[table]}", "",
           f"Top-1 test accuracy (%) at the **final epoch**, mean ± sample std over {_runs_per_cell(cfg, table)} "
           "(each seed re-draws the distilled set and re-trains the test network).", ""]
    out += grid("mean")
    out += ["", "Best test accuracy over training (model selection on the test set, as the public "
            "reference code reports it; shown for comparison only, not the headline):", ""]
    out += grid("best_mean")
    out += ["", "Final-epoch training loss of the test network, mean over the runs (has it converged on "
            "the set? a real-image set's loss well above a generated one's means it was still learning):", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(columns)]
    for (d, ipc, model), cells in _grid(cfg, table, agg, "mean"):
        out.append(f"| {d} | {ipc} | {MODEL_LABELS[model]} | " + " | ".join(
            "–" if c["a"] is None or c["a"].get("loss_mean") is None else f"{c['a']['loss_mean']:.3f}"
            for c in cells) + " |")
    for note in _notes(cfg, table, agg, mark="\\" + SIG_MARK):
        out += ["", note]
    return "\n".join(out) + "\n"


def render_latex(cfg: dict, table: str, agg: dict) -> str:
    rows, columns = _layout(cfg, table)
    cols = "lll" + "c" * len(columns)
    head = " & ".join(["Dataset", "IPC", "Test model"]
                      + [_label(c).replace(REPORTED_MARK, r"$^\dagger$") for c in columns])
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{TABLE_TITLES[table]}. Final-epoch top-1 test accuracy (\%), mean $\pm$ std "
             rf"over {_runs_per_cell(cfg, table)}; bold: best of our runs per row (Full, an upper bound, and "
             rf"reported figures are not ranked).}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head + r" \\", r"\midrule"]
    for (d, ipc, model), cells in _grid(cfg, table, agg, "mean"):
        vals = []
        for c in cells:
            a = c["a"]
            if a is None:
                vals.append("--")
                continue
            if c["best"]:  # \textbf bolds text, not math: the digits stay out of math mode
                v = f"{a['mean']:.1f}" if a["std"] is None else f"{a['mean']:.1f} $\\pm$ {a['std']:.1f}"
                v = rf"\textbf{{{v}}}"
            else:
                v = f"${a['mean']:.1f}$" if a["std"] is None else f"${a['mean']:.1f} \\pm {a['std']:.1f}$"
            vals.append(v + (f"$^{{{SIG_MARK}}}$" if c["sig"] else ""))
        lines.append(" & ".join([d, ipc, MODEL_LABELS[model]] + vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\footnotesize " + n.replace(REPORTED_MARK, r"$^\dagger$")
              for n in _notes(cfg, table, agg, mark=f"$^{{{SIG_MARK}}}$", lt="$<$")]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


_CSS = ("body{font-family:system-ui,sans-serif;margin:1.5em;max-width:80em}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:.25em .7em}"
        "thead th{border-bottom:2px solid #333;text-align:left}tbody tr{border-bottom:1px solid #ddd}"
        "td.n{text-align:right;white-space:nowrap}td.rep{color:#666;font-style:italic}"
        "td a{color:inherit;text-decoration:none}td a:hover{text-decoration:underline}"
        "p.note{font-size:.9em;color:#333}")


def render_html(cfg: dict, table: str, agg: dict, mlflow: dict | None = None) -> str:
    """A small self-contained page. Each of our cells names its runs (``title``, on hover) and, when
    ``mlflow`` gives the evaluate experiment's id and the cells' parent runs ({"experiment_id",
    "parents": {(dataset, method, ipc, model): run id}}), links to its parent run in the MLflow UI,
    which lists the seed runs nested below it."""
    from ..tracking.runs import run_url

    rows, columns = _layout(cfg, table)
    esc = html.escape
    parents = (mlflow or {}).get("parents", {})

    def td(c, key) -> str:
        a, (_, is_reported) = c["a"], c["column"]
        if a is None:
            return '<td class="n">–</td>'
        text = esc(_fmt(a, key))
        text = f"<b>{text}</b>" if c["best"] else text
        if is_reported:
            return f'<td class="n rep" title="{esc("published: " + SOURCES[a["source"]])}">{text}</td>'
        parent = parents.get(c["key"])
        if parent is not None and mlflow.get("experiment_id") is not None:
            text = f'<a href="{esc(run_url(mlflow["experiment_id"], parent))}">{text}</a>'
        if c["sig"]:
            text += f'<sup title="paired t-test against Minimax: p &lt; {SIG_LEVEL}">{SIG_MARK}</sup>'
        return f'<td class="n" title="{esc("runs: " + ", ".join(a["run_ids"]))}">{text}</td>'

    def grid(key) -> list[str]:
        lines = ["<table>", "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in
                                                      ["Dataset", "IPC", "Test model"] + [_label(c) for c in columns])
                 + "</tr></thead>", "<tbody>"]
        for (d, ipc, model), cells in _grid(cfg, table, agg, key):
            lines.append(f"<tr><td>{esc(d)}</td><td>{esc(ipc)}</td><td>{esc(MODEL_LABELS[model])}</td>"
                         + "".join(td(c, key) for c in cells) + "</tr>")
        return lines + ["</tbody>", "</table>"]

    title = esc(TABLE_TITLES[table])
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{title}</title>",
           f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{title}</h1>",
           f"<p>Top-1 test accuracy (%) at the <b>final epoch</b>, mean ± sample std over "
           f"{esc(_runs_per_cell(cfg, table))} (each seed re-draws the distilled set and re-trains the test network). "
           "Hover a cell for the MLflow runs behind it"
           + ("; click it for its table-cell run, which nests them." if parents else ".") + "</p>"]
    out += grid("mean")
    out += ["<p>Best test accuracy over training (model selection on the test set, as the public reference "
            "code reports it; shown for comparison only, not the headline):</p>"]
    out += grid("best_mean")
    out += [f'<p class="note">{esc(n)}</p>' for n in _notes(cfg, table, agg)]
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def parent_cells(cfg: dict, agg: dict, compared: list[dict] = ()) -> list[dict]:
    """Every table cell that has runs, in the shape ``tracking.nest_seed_runs`` takes; the first table
    holding a cell names its parent run (Figure 4's sweep cells: "figure4"). ``compared``
    (compare.comparisons) adds each comparison's vs_<other>_* metrics to its first method's cell."""
    from .compare import parent_metrics
    from ..tracking.runs import CELL_KEYS

    tables: dict[tuple, list[str]] = {}
    cells = [(table, c) for table in cfg["tables"] for c in table_cells(cfg, table)]
    cells += [("figure4", c) for c in sweep_cells(cfg)]
    for table, c in cells:
        names = tables.setdefault((c.dataset, c.method, c.ipc, c.model), [])
        if table not in names:
            names.append(table)
    out = []
    for key, names in tables.items():
        a = agg.get(key)
        if a is None:
            continue
        d, m, ipc, model = key
        out.append({"name": f"{names[0]}/{d}/{m}/ipc{ipc}/{model}",
                    "tags": {**dict(zip(CELL_KEYS, key)), "table": names[0], "tables": ",".join(names)},
                    "metrics": {**{k: a[k] for k in ("mean", "std", "best_mean", "best_std", "n")},
                                **parent_metrics(compared, d, m, ipc, model)},
                    "run_ids": a["run_ids"]})
    return out


def metrics_tree(cfg: dict, agg: dict) -> dict:
    """Nested table -> dataset -> method -> ipc -> model -> {mean, std}: for `dvc metrics`."""
    tree = {}
    for table in cfg["tables"]:
        for c in table_cells(cfg, table):
            a = agg.get((c.dataset, c.method, c.ipc, c.model))
            if a is not None:
                node = tree.setdefault(table, {}).setdefault(c.dataset, {}).setdefault(c.method, {})
                node.setdefault(f"ipc{c.ipc}", {})[c.model] = {
                    "mean": round(a["mean"], 3), "std": round(a["std"], 3),
                    **({"train_loss": round(a["loss_mean"], 4)} if a["loss_mean"] is not None else {})}
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


def write_sweeps(series: dict, out_dir) -> None:
    """Figure 4's points for DVC: one CSV per (hyper-parameter, IPC), rows value, test_acc, std, seeds."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, by_ipc in series.items():
        for ipc, points in by_ipc.items():
            with atomic_path(out_dir / f"{key}-ipc{ipc}.csv") as tmp, open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["value", "test_acc", "test_acc_std", "seeds"])
                w.writerows([value, round(mean, 3), round(std, 3), n] for value, mean, std, n in points)


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
           "nearest-neighbour distance (higher = more of the class represented). **k-NN precision / "
           "recall / coverage** (%) and **density** (Naeem et al. 2020, k = 5): the distilled set against every "
           "real training image in the feature ConvNet's embedding (K-Center/Herding's network), classes pooled: "
           "precision, the share of distilled images inside a real image's k-NN ball; recall, the share of real "
           "images inside a distilled one's; coverage, the share of real balls holding a distilled image; "
           "density, distilled images' ball memberships / k.", ""]
    measures = (("similarity", "Within-class similarity", 1), ("coverage", "Coverage (%)", 100),
                ("prdc_precision", "k-NN precision (%)", 100), ("prdc_recall", "k-NN recall (%)", 100),
                ("prdc_density", "k-NN density", 1), ("prdc_coverage", "k-NN coverage (%)", 100))
    for key, title, scale in measures:
        out += [f"## {title}", "", "| Dataset | IPC | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |",
                "|---|---|" + "---:|" * len(methods)]
        for d in cfg["tables"]["table1"]["datasets"]:
            for ipc in cfg["ipc"]:
                vals = []
                for m in methods:
                    # similarity is undefined (None) for sets with one image per class
                    xs = np.array([scale * v[key] for v in groups.get((d, m, str(ipc)), []) if v.get(key) is not None])
                    ddof = 1 if len(xs) > 1 else 0
                    digits = {"similarity": 3, "prdc_density": 2}.get(key, 1)  # fixed: a zero spread prints as 0
                    vals.append("–" if len(xs) == 0 else f"{xs.mean():.{digits}f} ± {xs.std(ddof=ddof):.{digits}f}")
                out.append(f"| {d} | {ipc} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out)


def render_all(cfg: dict, result_paths: list[str], out_tables, out_metrics, out_plots,
               diversity_paths: list[str] = (), grids: dict | None = None, out_figures="reports/figures",
               tracking: dict | None = None, out_sweeps="reports/plots/sweeps") -> dict:
    """Every report file; with ``tracking`` (params.yaml's mlflow section) first one MLflow parent run
    per table cell with its seed runs nested below, which the HTML tables then link to."""
    from . import compare

    results = [read_json(p) for p in result_paths]
    agg = aggregate(results)
    compared = compare.comparisons(cfg, agg)
    mlflow = None
    if tracking is not None:
        from ..tracking.runs import nest_seed_runs

        experiment_id, parents = nest_seed_runs(tracking, parent_cells(cfg, agg, compared))
        mlflow = {"experiment_id": experiment_id, "parents": parents}
    for ext, render in (("md", compare.render_markdown), ("tex", compare.render_latex), ("html", compare.render_html)):
        write_text(Path(out_tables) / f"comparisons.{ext}", render(compared, METHOD_LABELS, MODEL_LABELS))
    for table in cfg["tables"]:
        write_text(Path(out_tables) / f"{table}.md", render_markdown(cfg, table, agg))
        write_text(Path(out_tables) / f"{table}.tex", render_latex(cfg, table, agg))
        write_text(Path(out_tables) / f"{table}.html", render_html(cfg, table, agg, mlflow))
    write_text(Path(out_tables) / "diversity.md", render_diversity(cfg, [read_json(p) for p in diversity_paths]))
    for src, dst in (grids or {}).items():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    write_curves(results, out_plots)
    if cfg.get("sweeps"):
        from .figures import figure4

        write_sweeps(figure4(cfg, agg, Path(out_figures) / "figure4.png", Path(out_figures) / "figure4.pdf"),
                     out_sweeps)
    tree = {**metrics_tree(cfg, agg), "comparisons": compare.metrics_tree(compared)}
    write_json(out_metrics, tree)
    return tree
