"""The mechanism study: does the self-adaptive memory change what the generator makes?

``config/study.yaml`` (``make study``) evaluates every generative method of ``study.methods`` at
every fine-tuning length (``study.max_steps``) and classifier-free guidance scale
(``study.guidance``) on one dataset and test model. Each point is a variant of its method
(``config.study_points``): "ours-max_steps-5000-guidance-2" is Ours fine-tuned 5000 steps and
sampled at guidance 2; guidance variants sample the same fine-tuned model. The methods separate

    fine-tuning itself      DiffFit (no memory) - DiT      (memory terms weighted 0, same steps)
    the memory              Ours / Minimax / Ours (paper code) - DiffFit (no memory)
    the eviction rule       Ours (max/max) - Minimax (fifo/fifo), both eq. (6)
    the weighting           Ours (paper code) - Ours, both max/max
    the length              a method at the longest length - at the shortest
    the guidance            a method at one guidance - at the next lower

a nested design: the weighting is only crossed with max/max eviction, so an eviction x weighting
interaction cannot be separated; length and guidance are fully crossed with every method.

Each contrast is paired on (distill_seed, seed) when both sides are fine-tuned (``stats.pair_up``),
on the seed against DiT, and reported for accuracy and the diversity measures (``diversity.py``)
with its 95% CI, p and MDD. Nothing here writes to MLflow: the evaluation and diversity runs hold
every number.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..evaluate.names import net_label
from ..experiment import methods
from ..experiment.grid import ipc_label, parse_ipc, study_points
from ..io import atomic_path, read_json, write_json, write_text
from .compare import _p
from .stats import pair_up, paired
from .writer import markdown

# measure -> (label, scale to the printed unit); accuracy in points, the shares in percent
MEASURES = {
    "test_acc": ("accuracy (%)", 100.0),  # result files hold fractions
    "prdc_coverage": ("coverage, k-NN (%)", 100.0),
    "prdc_precision": ("precision, k-NN (%)", 100.0),
    "prdc_recall": ("recall, k-NN (%)", 100.0),
    "prdc_density": ("density, k-NN", 1.0),
    "similarity": ("within-class similarity", 1.0),
    "coverage": ("coverage, VAE latents (%)", 100.0),
}
CONTRAST_MEASURES = ("test_acc", "prdc_coverage", "similarity")  # the contrasts table's columns


def collect(results: list, diversity: list) -> dict:
    """method name -> ipc -> measure -> {(distill_seed, seed): value} from evaluation and diversity
    JSONs (``results`` and ``diversity`` are file paths)."""
    data: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for path in results:
        r = read_json(path)
        c = r["cell"]
        data[c["method"]][parse_ipc(c["ipc"])]["test_acc"][(c["distill_seed"], c["seed"])] = r["test_acc"]
    for path in diversity:
        r = read_json(path)
        for ipc, m in r["ipc"].items():
            for k, v in m.items():
                if v is not None:
                    data[r["method"]][parse_ipc(ipc)][k][(r["distill_seed"], r["seed"])] = v
    return data


def _label(p: dict) -> str:
    steps = "" if p["max_steps"] is None else f", {p['max_steps']} steps"
    return f"{methods.label(p['method'])}{steps}, guidance {p['guidance']:g}"


def contrasts(cfg: dict) -> list[tuple[str, dict, dict]]:
    """(kind, point a, point b) of every contrast the study's grid supports, a - b."""
    st, pts = cfg["study"], study_points(cfg)
    at = {(p["method"], p["max_steps"], p["guidance"]): p for p in pts}
    lengths, scales = sorted(st["max_steps"]), sorted(float(g) for g in st["guidance"])
    g0 = float(cfg["sample"]["guidance"]) if float(cfg["sample"]["guidance"]) in scales else scales[-1]
    tuned = [m for m in st["methods"] if methods.get(m).finetuned]
    out = []

    def add(kind, a, b):
        if a in at and b in at:
            out.append((kind, at[a], at[b]))

    for L in lengths:
        add("fine-tuning itself", ("difffit", L, g0), ("dit", None, g0))
        for m in ("ours", "minimax", "ours-paper-code"):
            add("memory", (m, L, g0), ("difffit", L, g0))
        add("eviction", ("ours", L, g0), ("minimax", L, g0))
        add("weighting", ("ours-paper-code", L, g0), ("ours", L, g0))
    if len(lengths) > 1:
        for m in tuned:
            add("length", (m, lengths[-1], g0), (m, lengths[0], g0))
    for m in st["methods"]:
        L = lengths[-1] if methods.get(m).finetuned else None
        for hi, lo in zip(scales[::-1], scales[-2::-1]):
            add("guidance", (m, L, hi), (m, L, lo))
    return out


def compute(cfg: dict, data: dict) -> dict:
    """{"points": [...], "contrasts": [...]} for every ipc: per point each measure's mean, std and n;
    per contrast and measure the ``stats.Paired`` fields in printed units and the pairing."""
    points, rows = [], []
    for ipc in cfg["ipc"]:
        for p in study_points(cfg):
            runs = data.get(p["name"], {}).get(ipc, {})
            entry = {**p, "ipc": ipc, "label": _label(p)}
            for k, (_, scale) in MEASURES.items():
                v = np.asarray(list(runs.get(k, {}).values()), dtype=float) * scale
                entry[k] = None if len(v) == 0 else {"mean": float(v.mean()), "n": len(v),
                                                     "std": float(v.std(ddof=1)) if len(v) > 1 else None}
            points.append(entry)
        for kind, a, b in contrasts(cfg):
            ra, rb = data.get(a["name"], {}).get(ipc, {}), data.get(b["name"], {}).get(ipc, {})
            row = {"kind": kind, "ipc": ipc, "a": a["name"], "b": b["name"],
                   "label": f"{_label(a)} − {_label(b)}"}
            for k in CONTRAST_MEASURES:
                scale = MEASURES[k][1]
                keys, xa, xb, how = pair_up(ra.get(k, {}), rb.get(k, {}))
                row[k] = None if not keys else {"pairing": how, **paired(np.multiply(xa, scale),
                                                                         np.multiply(xb, scale)).as_dict()}
            rows.append(row)
    return {"points": points, "contrasts": rows}


# ----------------------------------------------------------------------------- rendering


def _mean_sd(e: dict | None, fmt: str) -> str:
    if e is None:
        return "–"
    return format(e["mean"], fmt) + ("" if e["std"] is None else " ± " + format(e["std"], fmt))


def _diff(r: dict | None, fmt: str) -> str:
    if r is None:
        return "–"
    if r["ci_low"] is None:
        return f"{r['mean']:+{fmt}} (n {r['n']})"
    return (f"{r['mean']:+{fmt}} [{r['ci_low']:+{fmt}}, {r['ci_high']:+{fmt}}] p {_p(r['p'])} "
            f"MDD {r['mdd']:{fmt}} (n {r['n']})")


_FMT = {"test_acc": ".1f", "prdc_coverage": ".1f", "prdc_precision": ".1f", "prdc_recall": ".1f",
        "prdc_density": ".2f", "similarity": ".3f", "coverage": ".1f"}


def tables(cfg: dict, res: dict) -> dict[str, list[list[str]]]:
    """The study's two tables as rows of strings (header first): points and contrasts."""
    points = [["IPC", "Point", *(MEASURES[k][0] for k in MEASURES)]]
    points += [[ipc_label(e["ipc"]), e["label"], *(_mean_sd(e[k], _FMT[k]) for k in MEASURES)]
               for e in res["points"]]
    contrast = [["IPC", "Contrast", "Kind", *(f"Δ {MEASURES[k][0]}" for k in CONTRAST_MEASURES), "pairing"]]
    for r in res["contrasts"]:
        how = next((r[k]["pairing"] for k in CONTRAST_MEASURES if r[k]), "–")
        contrast.append([ipc_label(r["ipc"]), r["label"], r["kind"],
                         *(_diff(r[k], _FMT[k]) for k in CONTRAST_MEASURES), how])
    return {"points": points, "contrasts": contrast}


def _explanation(cfg: dict) -> list[str]:
    st = cfg["study"]
    n_ds = len(st["distill_seeds"])
    return [
        f"Mechanism study on {st['dataset']} with {net_label(st['model'])}, {len(cfg['seeds'])} evaluation "
        f"seeds x {n_ds} fine-tuning (distillation) seeds per fine-tuned point (DiT: {len(cfg['seeds'])} runs). "
        "Accuracy: final-epoch top-1 test accuracy. k-NN precision / recall / density / coverage (Naeem et al. "
        "2020, k = 5) of the distilled set against every real training image in the feature ConvNet's "
        "embedding (the K-Center/Herding network); within-class similarity and VAE coverage as in the "
        "diversity table. Mean ± sample std over runs.",
        "Contrasts: a − b, paired on (distill_seed, seed) between fine-tuned points and on the seed against "
        "DiT (fine-tuned runs averaged over distillation seeds); 95% t interval, paired t-test p, and the "
        "minimum detectable difference (MDD, 80% power, alpha 0.05). A difference whose interval spans 0 is "
        "not shown to exist; the MDD says how large a true difference could have been missed.",
        "Design: nested. Fine-tuning length and guidance are crossed with every method; the memory weighting "
        "(Ours (paper code)) only with max/max eviction, so eviction x weighting is not separable.",
    ]


def render_md(cfg: dict, res: dict) -> str:
    out, both = ["# Mechanism study", ""] + [p + "\n" for p in _explanation(cfg)], tables(cfg, res)
    for name, title in (("contrasts", "Contrasts"), ("points", "Every point")):
        rows = both[name]
        out += [f"## {title}", "", *markdown(rows[0], rows[1:], len(rows[0])), ""]
    return "\n".join(out) + "\n"


def render_html(cfg: dict, res: dict) -> str:
    from .writer import html_table, page

    body = ["<h1>Mechanism study</h1>", *(f"<p>{html.escape(p)}</p>" for p in _explanation(cfg))]
    both = tables(cfg, res)
    for name, title in (("contrasts", "Contrasts"), ("points", "Every point")):
        rows = both[name]
        body += [f"<h2>{title}</h2>", *html_table(rows[0], rows[1:], len(rows[0]))]
    return page("Mechanism study", body)


def figure(cfg: dict, res: dict, out_png, out_pdf) -> None:
    """Accuracy and k-NN coverage against guidance, one line per method and length (solid: longest,
    dashed: shorter), error bars = sample std, each line nudged sideways so the bars stay readable;
    one column per ipc."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .figures import NO_DATE

    st = cfg["study"]
    ipcs = cfg["ipc"]
    longest = max(st["max_steps"])
    fig, axes = plt.subplots(2, len(ipcs), figsize=(8.5 * len(ipcs), 8), squeeze=False)
    colors = dict(zip(st["methods"], plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    scales = sorted(float(g) for g in st["guidance"])
    step = 0.012 * (scales[-1] - scales[0] or 1)  # sideways nudge between lines, in guidance units
    for col, ipc in enumerate(ipcs):
        series = defaultdict(list)
        for e in res["points"]:
            if e["ipc"] == ipc:
                series[(e["method"], e["max_steps"])].append(e)
        for row, k in enumerate(("test_acc", "prdc_coverage")):
            ax = axes[row][col]
            for i, ((m, steps), es) in enumerate(series.items()):
                es = [e for e in sorted(es, key=lambda e: e["guidance"]) if e[k] is not None]
                if not es:
                    continue
                label = methods.label(m) + ("" if steps is None else f", {steps} steps")
                nudge = (i - (len(series) - 1) / 2) * step
                ax.errorbar([e["guidance"] + nudge for e in es], [e[k]["mean"] for e in es],
                            yerr=[e[k]["std"] or 0 for e in es], marker="o", capsize=2, color=colors[m],
                            ls="-" if steps in (None, longest) else "--", label=label, lw=1.2, ms=4)
            ax.set_xticks(scales)
            ax.set_xlabel("guidance scale at sampling")
            ax.set_ylabel(MEASURES[k][0] + ", mean ± std")
            ax.set_title(f"{st['dataset']}, IPC {ipc}")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    for path, fmt in ((out_png, "png"), (out_pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=130, metadata=NO_DATE[fmt])
    plt.close(fig)


def render(cfg: dict, results: list, diversity: list, out_dir) -> dict:
    """Every study output under ``out_dir``: study.md, study.html, metrics.json (ipc as text), figure.png/pdf."""
    out_dir = Path(out_dir)
    res = compute(cfg, collect(results, diversity))
    write_text(out_dir / "study.md", render_md(cfg, res))
    write_text(out_dir / "study.html", render_html(cfg, res))
    write_json(out_dir / "metrics.json", {part: [{**e, "ipc": ipc_label(e["ipc"])} for e in entries]
                                          for part, entries in res.items()})
    figure(cfg, res, out_dir / "figure.png", out_dir / "figure.pdf")
    return res
