"""The tables as small self-contained HTML pages: each of our cells names its MLflow runs."""

from __future__ import annotations

import html

from ..baselines.reported import SOURCES
from ..evaluate.names import net_label
from ..experiment.grid import ipc_label, table_layout
from .tables import (
    SIG_LEVEL,
    SIG_MARK,
    TABLE_TITLES,
    _fmt,
    _grid,
    _label,
    _notes,
    _runs_per_cell,
)
from .writer import page


UI_URL = "http://127.0.0.1:5000"  # `make ui`


def run_url(experiment_id: str, run_id: str, ui: str = UI_URL) -> str:
    """The MLflow UI's page of one run (the parents job's file gives the ids: reports read files only)."""
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"


def render_html(cfg: dict, table: str, agg: dict, mlflow: dict | None = None, teachers: dict | None = None) -> str:
    """A small self-contained page. Each of our cells names its runs (``title``, on hover) and, when
    ``mlflow`` gives the evaluate experiment's id and the cells' parent runs ({"experiment_id",
    "parents": {(dataset, method, ipc, model, protocol): run id}}), links to its parent run in the MLflow UI,
    which lists the seed runs nested below it."""
    rows, columns = table_layout(cfg, table)
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
                                                      ["Protocol", "Dataset", "IPC", "Test model"] + [_label(c) for c in columns])
                 + "</tr></thead>", "<tbody>"]
        for (d, ipc, model, protocol), cells in _grid(cfg, table, agg, key):
            lines.append(f"<tr><td>{esc(protocol)}</td><td>{esc(d)}</td><td>{esc(ipc_label(ipc))}</td>"
                         f"<td>{esc(net_label(model))}</td>" + "".join(td(c, key) for c in cells) + "</tr>")
        return lines + ["</tbody>", "</table>"]

    out = [f"<h1>{esc(TABLE_TITLES[table])}</h1>",
           f"<p>Top-1 test accuracy (%) at the <b>final epoch</b>, mean ± sample std over "
           f"{esc(_runs_per_cell(cfg, table))} (each seed re-draws the distilled set and re-trains the test network). "
           "Hover a cell for the MLflow runs behind it"
           + ("; click it for its table-cell run, which nests them." if parents else ".") + "</p>"]
    out += grid("mean")
    out += ["<p>Best test accuracy over training (model selection on the test set, as the public reference "
            "code reports it; shown for comparison only, not the headline):</p>"]
    out += grid("best_mean")
    out += [f'<p class="note">{esc(n)}</p>' for n in _notes(cfg, table, agg, teachers=teachers)]
    return page(TABLE_TITLES[table], out)
