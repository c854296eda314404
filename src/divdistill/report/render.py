"""The render job's work: every report file from the result files (no MLflow writes: the
table-cell parent runs are their own job, tracking/parents.py, whose run ids the HTML links to)."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..evaluate.names import net_labels
from ..experiment import methods
from ..experiment.grid import ipc_label, parse_ipc
from ..io import atomic_path, read_json, write_json, write_text
from . import compare, robust
from .evidence import evidence
from .aggregate import aggregate, metrics_tree, write_curves, write_sweeps
from .html import render_html
from .tables import render_latex, render_markdown
from .writer import markdown


def render_diversity(cfg: dict, diversity: list[dict]) -> str:
    """Beside Table 1: within-class latent similarity and coverage of each method's distilled sets."""
    groups = defaultdict(list)
    for r in diversity:
        for ipc, m in r["ipc"].items():
            groups[(r["dataset"], r["method"], parse_ipc(ipc))].append(m)
    # DM optimises pixels, one set per IPC: its sets are not measured here
    shown = [m for m in methods.names("selection", "generative") if m in cfg["tables"]["table1"]["methods"]]
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
        rows = []
        for d in cfg["tables"]["table1"]["datasets"]:
            for ipc in cfg["ipc"]:
                vals = []
                for m in shown:
                    # similarity is undefined (None) for sets with one image per class
                    xs = np.array([scale * v[key] for v in groups.get((d, m, ipc), []) if v.get(key) is not None])
                    ddof = 1 if len(xs) > 1 else 0
                    digits = {"similarity": 3, "prdc_density": 2}.get(key, 1)  # fixed: a zero spread prints as 0
                    vals.append("–" if len(xs) == 0 else f"{xs.mean():.{digits}f} ± {xs.std(ddof=ddof):.{digits}f}")
                rows.append([d, ipc_label(ipc), *vals])
        out += [f"## {title}", "", *markdown(["Dataset", "IPC", *(methods.label(m) for m in shown)], rows, 2), ""]
    return "\n".join(out)


def _cell_key(text: str) -> tuple:
    """A parents file's "dataset/method/ipc/model/protocol" as an aggregate key."""
    d, m, ipc, model, protocol = text.split("/")
    return d, m, parse_ipc(ipc), model, protocol


def render_all(cfg: dict, result_paths: list[str], out_tables, out_metrics, out_plots,
               diversity_paths: list[str] = (), grids: dict | None = None, out_figures="reports/figures",
               parents: dict | None = None, out_sweeps="reports/plots/sweeps", out_evidence=None,
               teachers: list[dict] = ()) -> dict:
    """Every report file. ``parents`` (tracking/parents.py's file: {"experiment_id", "parents":
    {"dataset/method/ipc/model/protocol": run id}}) lets the HTML tables link each cell to its MLflow run;
    ``teachers`` (the teacher jobs' result files) give the soft protocol's notes their accuracies."""
    results = [read_json(p) for p in result_paths]
    agg = aggregate(results)
    compared = compare.comparisons(cfg, agg)
    scores = robust.scores(cfg, agg)
    score_diffs = robust.differences(cfg, scores)
    taught = {(t["cell"]["dataset"], t["cell"]["model"]): t for t in teachers}
    mlflow = None
    if parents is not None:
        mlflow = {"experiment_id": parents["experiment_id"],
                  "parents": {_cell_key(k): v for k, v in parents["parents"].items()}}
    labels, nets = methods.labels(), net_labels()
    for ext, render in (("md", compare.render_markdown), ("tex", compare.render_latex), ("html", compare.render_html)):
        write_text(Path(out_tables) / f"comparisons.{ext}", render(compared, labels, nets))
        write_text(Path(out_tables) / f"robust.{ext}", robust.render(scores, score_diffs, ext))
    for table in cfg["tables"]:
        write_text(Path(out_tables) / f"{table}.md", render_markdown(cfg, table, agg, taught))
        write_text(Path(out_tables) / f"{table}.tex", render_latex(cfg, table, agg, taught))
        write_text(Path(out_tables) / f"{table}.html", render_html(cfg, table, agg, mlflow, taught))
    write_text(Path(out_tables) / "diversity.md", render_diversity(cfg, [read_json(p) for p in diversity_paths]))
    for src, dst in (grids or {}).items():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    write_curves(results, out_plots)
    if cfg.get("sweeps"):
        from .figures import figure4

        write_sweeps(figure4(cfg, agg, Path(out_figures) / "figure4.png", Path(out_figures) / "figure4.pdf"),
                     out_sweeps)
    tree = {**metrics_tree(cfg, agg), "comparisons": compare.metrics_tree(compared),
            "robust": robust.metrics_tree(scores, score_diffs)}
    write_json(out_metrics, tree)
    if out_evidence is not None:  # last: the files as they were when every table above was made
        write_json(out_evidence, evidence(cfg, diversity_paths))
    return tree
