"""Tables from evaluation results: mean ± std over seeds, methods in the paper's order.

Every cell is aggregated from the per-seed JSON files that evaluation jobs write
(each names its MLflow run), so every printed number traces back to runs: the HTML
tables (html.py) name them and link each cell to its MLflow parent run (tracking/parents.py).
Columns, their order and labels come from the name table (experiment/methods.py).

Markdown, LaTeX and HTML show the same marks: **bold** is the best of a row among our
runs (Full, an upper bound, and published columns excluded) and ``*`` on Ours says the paired
t-test of Ours against Minimax (runs paired by seed, ``stats.paired``) gives p < 0.05; the notes
give that difference with its 95% CI and minimum detectable difference, and the comparisons table
(``compare.py``) every other headline comparison.
"""

from __future__ import annotations

from ..baselines.reported import SOURCES, reported
from ..evaluate import protocols
from ..evaluate.names import net_label
from ..experiment import methods
from ..experiment.grid import ipc_label, protocols_of, seeds_for, table_layout
from .writer import markdown

TABLE_TITLES = {
    "table1": "Table 1: comparison with baselines",
    "table2": "Table 2: further datasets",
    "table3": "Table 3: ablation of the eviction strategies (real memory / generative memory; Ours = max / max)",
}


REPORTED_MARK = "†"


def _label(column) -> str:
    m, is_reported = column
    return methods.label(m) + (f" (reported){REPORTED_MARK}" if is_reported else "")


def _reported_value(d, m, ipc, model):
    """A published figure in the shape of an aggregate (best-over-training rows show it too: the
    sources report that figure)."""
    r = reported(d, m, model, ipc)
    if r is None:
        return None
    return {"mean": r[0], "std": r[1], "best_mean": r[0], "best_std": r[1], "source": r[2]}


def _footnotes(cfg: dict, table: str) -> list[str]:
    """Citations of the reported columns, and which rows no source covers."""
    rows, columns = table_layout(cfg, table)
    rows = [(d, ipc, model) for d, ipc, model, p in rows if p == protocols.HARD]  # sources report hard labels
    notes = []
    for m, is_reported in columns:
        if not is_reported:
            continue
        values = {(d, ipc, model): _reported_value(d, m, ipc, model) for d, ipc, model in rows}
        found = {v["source"] for v in values.values() if v}
        missing = sorted({f"{d} / {net_label(model)}" for (d, _, model), v in values.items() if v is None})
        text = f"{REPORTED_MARK} {methods.label(m)} (reported): published numbers, not re-run here"
        if methods.citation(m):
            text += f" (method: {methods.citation(m)})"
        if found:
            text += "; source: " + "; ".join(SOURCES[s] for s in sorted(found))
        if missing:
            text += f". No published {methods.label(m)} figure exists for " + ", ".join(missing) + " (–)"
        notes.append(text + ".")
    return notes


def _runs_per_cell(cfg: dict, table: str) -> str:
    n, d, n_full = len(cfg["seeds"]), len(cfg.get("distill_seeds", [0])), len(seeds_for(cfg, "full"))
    text = f"{n} seeds" if d == 1 else f"{n} seeds (× {d} distillation seeds for fine-tuned methods)"
    if n_full != n and "full" in cfg["tables"][table]["methods"]:
        text += f"; Full (an upper bound) over the first {n_full}"
    return text


def _cell(agg, d, column, ipc, model, protocol):
    m, is_reported = column if isinstance(column, tuple) else (column, False)
    if is_reported:  # published figures are hard-label figures
        return _reported_value(d, m, ipc, model) if protocol == protocols.HARD else None
    # Full does not depend on IPC: the same measurement is shown on every row.
    return agg.get(_key(d, m, ipc, model, protocol))


def _key(d, m, ipc, model, protocol) -> tuple:
    return (d, m, None if m == "full" else ipc, model, protocol)


def _fmt(a, key: str) -> str:
    if a is None:
        return "–"
    std = a[key.replace("mean", "std")]
    return f"{a[key]:.1f}" if std is None else f"{a[key]:.1f} ± {std:.1f}"


SIG_MARK, SIG_LEVEL = "*", 0.05  # on Ours' cell: paired t-test against Minimax


def _paired_rows(cfg: dict, table: str, agg: dict) -> dict[tuple, dict | None]:
    """Row (dataset, ipc, model, protocol) -> the paired comparison Ours - Minimax (compare.comparisons'
    dict; None without runs on both sides); empty when the table lacks either method."""
    from .compare import comparisons, find

    if not {"ours", "minimax"} <= set(cfg["tables"][table]["methods"]):
        return {}
    rows, _ = table_layout(cfg, table)
    found = comparisons({**cfg, "tables": {table: cfg["tables"][table]}}, agg)
    return {row: find(found, table, *row, "ours", "minimax") for row in rows}


def _ranked(column) -> bool:
    """Bold goes to the best of our runs: Full (an upper bound) and published figures are not ranked."""
    m, is_reported = column
    return not is_reported and m != "full"


def _grid(cfg: dict, table: str, agg: dict, key: str) -> list[tuple[tuple, list[dict]]]:
    """(row, cells) of one table: each cell's column, aggregate ``a`` (None: missing), ``best``
    (bold) and ``sig`` (the marker; headline grid only)."""
    rows, columns = table_layout(cfg, table)
    tests = _paired_rows(cfg, table, agg) if key == "mean" else {}
    out = []
    for row in rows:
        d, ipc, model, protocol = row
        cells = [{"column": c, "key": _key(d, c[0], ipc, model, protocol), "a": _cell(agg, d, c, ipc, model, protocol)}
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


def _protocol_notes(cfg: dict, table: str, teachers: dict) -> list[str]:
    """What each of the table's protocols is and, for the soft ones, each teacher's test accuracy."""
    used = protocols_of(cfg, table)
    if used == [protocols.HARD]:
        return []
    text = "Protocols (row groups; docs/protocol.md): " + "; ".join(f"{p}: {protocols.label(p)}" for p in used) + "."
    if any(protocols.get(p).labels == "soft" for p in used):
        t = cfg["tables"][table]
        accs = [f"{d} / {net_label(m)} {100 * teachers[(d, m)]['test_acc']:.1f}%" if (d, m) in teachers
                else f"{d} / {net_label(m)} –" for d in t["datasets"] for m in t["models"]]
        text += (" Soft labels come from one teacher per dataset and test network, trained on the whole real "
                 "training set with the hard protocol (its final epoch; nothing chosen on the test set); Full is "
                 "not run under them. Teachers' test accuracy: " + ", ".join(accs) + ".")
    return [text]


def _dataset_notes(cfg: dict, table: str) -> list[str]:
    """params.yaml's own (folder) datasets of the table: where they come from and their classes, in label order."""
    from ..data.registry import DATASETS

    own = cfg.get("datasets") or {}
    return [f"{d}: a folder dataset ({own[d]['root']}); classes: {', '.join(DATASETS[d].class_names)}."
            for d in cfg["tables"][table]["datasets"] if d in own and d in DATASETS]


def _notes(cfg: dict, table: str, agg: dict, mark: str = SIG_MARK, lt: str = "<", teachers: dict | None = None) -> list[str]:
    """What bold and the marker mean, the t-tests' p-values, the protocols, then the reported columns' citations."""
    notes = ["Bold: the best of each row among our runs. Full (the whole training set, the "
             "same figure on every IPC row) is an upper bound and is not ranked; nor are published (reported) "
             "figures."] + _dataset_notes(cfg, table) + _protocol_notes(cfg, table, teachers or {})
    tests = _paired_rows(cfg, table, agg)
    if tests:
        from .compare import summary

        parts = []
        for (d, ipc, model, protocol), r in tests.items():
            where = f"{d} / IPC {ipc_label(ipc)} / {net_label(model)} / {protocol}"
            parts.append(f"{where}: " + ("n/a" if r is None else summary(r, methods.labels())
                                         + (mark if r["p"] is not None and r["p"] < SIG_LEVEL else "")))
        notes.append(f"{mark} on Ours: the paired t-test of Ours against Minimax (runs paired by evaluation "
                     f"seed: same network initialisation, augmentation and sampling noise) gives p {lt} "
                     f"{SIG_LEVEL} (not corrected for multiple comparisons). MDD: the smallest difference the "
                     "comparison would detect with 80% power at alpha 0.05; comparisons.md has the others. "
                     + "; ".join(parts) + ".")
    return notes + _footnotes(cfg, table)


def render_markdown(cfg: dict, table: str, agg: dict, teachers: dict | None = None) -> str:
    rows, columns = table_layout(cfg, table)
    head = ["Protocol", "Dataset", "IPC", "Test model"] + [_label(c) for c in columns]

    def text(c, key):
        t = _fmt(c["a"], key)
        return (f"**{t}**" if c["best"] else t) + ("\\" + SIG_MARK if c["sig"] else "")

    def grid(key, cell=text):
        return markdown(head, [[protocol, d, ipc_label(ipc), net_label(model), *(cell(c, key) for c in cells)]
                               for (d, ipc, model, protocol), cells in _grid(cfg, table, agg, key)], 4)

    def loss(c, _):
        return "–" if c["a"] is None or c["a"].get("loss_mean") is None else f"{c['a']['loss_mean']:.3f}"

    out = [f"# {TABLE_TITLES[table]}", "",
           f"Top-1 test accuracy (%) at the **final epoch**, mean ± sample std over {_runs_per_cell(cfg, table)} "
           "(each seed re-draws the distilled set and re-trains the test network).", ""]
    out += grid("mean")
    out += ["", "Best test accuracy over training (model selection on the test set, as the public "
            "reference code reports it; shown for comparison only, not the headline):", ""]
    out += grid("best_mean")
    out += ["", "Final-epoch training loss of the test network, mean over the runs (has it converged on "
            "the set? a real-image set's loss well above a generated one's means it was still learning):", ""]
    out += grid("mean", loss)
    for note in _notes(cfg, table, agg, mark="\\" + SIG_MARK, teachers=teachers):
        out += ["", note]
    return "\n".join(out) + "\n"


def _tex_text(note: str) -> str:
    """A note as LaTeX text: %, & and _ escaped (a percentage would start a comment)."""
    return note.replace("%", r"\%").replace("&", r"\&").replace("_", r"\_")


def render_latex(cfg: dict, table: str, agg: dict, teachers: dict | None = None) -> str:
    rows, columns = table_layout(cfg, table)
    cols = "llll" + "c" * len(columns)
    head = " & ".join(["Protocol", "Dataset", "IPC", "Test model"]
                      + [_label(c).replace(REPORTED_MARK, r"$^\dagger$") for c in columns])
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{TABLE_TITLES[table]}. Final-epoch top-1 test accuracy (\%), mean $\pm$ std "
             rf"over {_runs_per_cell(cfg, table)}; bold: best of our runs per row (Full, an upper bound, and "
             rf"reported figures are not ranked).}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head + r" \\", r"\midrule"]
    for (d, ipc, model, protocol), cells in _grid(cfg, table, agg, "mean"):
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
        lines.append(" & ".join([protocol, d, ipc_label(ipc), net_label(model)] + vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\footnotesize " + _tex_text(n).replace(REPORTED_MARK, r"$^\dagger$")
              for n in _notes(cfg, table, agg, mark=f"$^{{{SIG_MARK}}}$", lt="$<$", teachers=teachers)]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"
