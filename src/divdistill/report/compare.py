"""The comparisons table: per table row, the paired difference of the headline comparisons.

    Ours - Minimax, Ours - DiT, Minimax - DiT, Ours (paper code) - Ours, and every generative
    method - Random,

each where the table holds both methods, as mean difference (accuracy points), 95% t and bootstrap
intervals, paired t-test p and the minimum detectable difference (``stats.paired``). Written as
``reports/tables/comparisons.{md,tex,html}``, into ``reports/metrics.json`` (``dvc metrics diff``)
and onto the first method's MLflow table-cell run (``vs_<other>_*`` metrics).
"""

from __future__ import annotations


from ..experiment import methods
from ..experiment.grid import ipc_label, table_layout  # the table's rows, as the tables print them
from .stats import ALPHA, POWER, pair_up, paired
from .writer import document

# the paper's questions, then today's field: the training-free mode guidance against the method, the
# DiT it guides and the fine-tuned baseline
HEADLINE = (("ours", "minimax"), ("ours", "dit"), ("minimax", "dit"), ("ours-paper-code", "ours"),
            ("ours", "mgd3"), ("mgd3", "dit"), ("mgd3", "minimax"))


def pairs_of(table_methods) -> list[tuple[str, str]]:
    """The comparisons a table with ``table_methods`` supports, headline ones first."""
    have = set(table_methods)
    out = [(a, b) for a, b in HEADLINE if a in have and b in have]
    if "random" in have:  # the generated sets against random real images, then every other kind's
        for kinds in (("generative",), ("selection", "synthesis")):
            out += [(m, "random") for m in methods.names(*kinds) if m in have and m != "random"
                    and (m, "random") not in out]
    return out


def comparisons(cfg: dict, agg: dict) -> list[dict]:
    """Every comparison of every table row with runs on both sides: dicts with table, dataset, ipc,
    model, protocol, a, b, pairing and the ``stats.Paired`` fields (accuracy points)."""

    out = []
    for table, t in cfg["tables"].items():
        rows, _ = table_layout(cfg, table)
        for a, b in pairs_of(t["methods"]):
            for d, ipc, model, protocol in rows:
                ca, cb = agg.get((d, a, ipc, model, protocol)), agg.get((d, b, ipc, model, protocol))
                if ca is None or cb is None:
                    continue
                keys, xa, xb, how = pair_up(dict(zip(map(tuple, ca["seeds"]), ca["values"])),
                                            dict(zip(map(tuple, cb["seeds"]), cb["values"])))
                if not keys:
                    continue
                out.append({"table": table, "dataset": d, "ipc": ipc, "model": model, "protocol": protocol, "a": a, "b": b,
                            "pairing": how, **paired(xa, xb).as_dict()})
    return out


def find(rows: list[dict], table: str, dataset: str, ipc: int, model: str, protocol: str, a: str,
         b: str) -> dict | None:
    return next((r for r in rows if (r["table"], r["dataset"], r["ipc"], r["model"], r["protocol"], r["a"], r["b"])
                 == (table, dataset, ipc, model, protocol, a, b)), None)


def _num(x, fmt="+.1f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _ci(lo, hi) -> str:
    return "n/a" if lo is None else f"[{lo:+.1f}, {hi:+.1f}]"


def _p(p) -> str:
    return "n/a" if p is None else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def _cols(r: dict, labels: dict, models: dict) -> list[str]:
    return [r["table"], r["dataset"], ipc_label(r["ipc"]), models[r["model"]], r["protocol"],
            f"{labels[r['a']]} − {labels[r['b']]}", str(r["n"]), _num(r["mean"]), _ci(r["ci_low"], r["ci_high"]), _ci(r["boot_low"], r["boot_high"]),
            _p(r["p"]), _num(r["mdd"], ".1f")]


HEAD = ["Table", "Dataset", "IPC", "Test model", "Protocol", "Comparison", "n", "Δ (points)", "95% CI (t)",
        "95% CI (bootstrap)", "p (paired t)", "MDD"]


def _explanation(rows: list[dict]) -> list[str]:
    pairings = sorted({r["pairing"] for r in rows})
    return [f"Paired differences of final-epoch test accuracy (points, A − B): runs of two methods with the "
            f"same evaluation seed share the test network's initial weights, its batch order and "
            f"augmentation and (generated sets) the sampling noise, so they differ only in the distilled "
            f"images. Pairs on: {'; '.join(pairings) or 'n/a'}. 95% CI (t): mean ± t(0.975, n−1)·sd/√n; "
            f"bootstrap: percentile interval of 10,000 resamples of the pairs. p: two-sided paired t-test "
            f"(scipy.stats.ttest_rel), not corrected for multiple comparisons. MDD: the smallest true "
            f"difference this comparison detects with {POWER:.0%} power at α = {ALPHA} "
            f"((t(0.975, n−1) + t(0.80, n−1))·sd/√n): where a CI contains 0, the methods are not shown to "
            f"differ, and a true difference below the MDD could have been missed. n/a: fewer than 2 pairs, "
            f"or no spread in the differences."]


TITLE = "Comparisons: paired differences with stated power"
CAPTION = (r"Paired differences A $-$ B of final-epoch test accuracy (points) with 95\% intervals (t and bootstrap), "
           r"paired t-test $p$ and the minimum detectable difference at 80\% power, $\alpha = 0.05$.")


def _section(rows: list[dict], labels: dict, models: dict) -> list[tuple]:
    return [(None, HEAD, [_cols(r, labels, models) for r in rows], 6)]


def render_markdown(rows: list[dict], labels: dict, models: dict) -> str:
    return document("md", TITLE, _explanation(rows), _section(rows, labels, models))


def render_latex(rows: list[dict], labels: dict, models: dict) -> str:
    return document("tex", TITLE, [], _section(rows, labels, models), caption=CAPTION)


def render_html(rows: list[dict], labels: dict, models: dict) -> str:
    return document("html", TITLE, _explanation(rows), _section(rows, labels, models))


def metrics_tree(rows: list[dict]) -> dict:
    """table -> dataset -> "a-vs-b" -> ipc<k> -> model -> protocol -> {diff, ci_low, ci_high, p, mdd, n}
    for DVC (rounded to 3 decimals; undefined values are null)."""
    tree: dict = {}
    for r in rows:
        node = tree.setdefault(r["table"], {}).setdefault(r["dataset"], {}).setdefault(f"{r['a']}-vs-{r['b']}", {})
        node.setdefault(f"ipc{ipc_label(r['ipc'])}", {}).setdefault(r["model"], {})[r["protocol"]] = {
            k: (None if r[src] is None else round(r[src], 3 if k != "p" else 4))
            for k, src in (("diff", "mean"), ("ci_low", "ci_low"), ("ci_high", "ci_high"), ("p", "p"),
                           ("mdd", "mdd"))} | {"n": r["n"]}
    return tree


def parent_metrics(rows: list[dict], dataset: str, method: str, ipc: int | None, model: str,
                   protocol: str) -> dict[str, float]:
    """Metrics for method's table-cell run: vs_<b>_{diff,ci_low,ci_high,p,mdd} of each comparison with
    method as A (only defined values)."""
    out = {}
    for r in rows:
        if (r["dataset"], r["a"], r["ipc"], r["model"], r["protocol"]) == (dataset, method, ipc, model, protocol):
            for k, src in (("diff", "mean"), ("ci_low", "ci_low"), ("ci_high", "ci_high"), ("p", "p"), ("mdd", "mdd")):
                if r[src] is not None:
                    out[f"vs_{r['b']}_{k}"] = r[src]
    return out


def summary(r: dict, labels: dict) -> str:
    """One sentence per comparison for notes and the README: the measured difference, its CI, p, MDD."""
    what = f"{labels[r['a']]} − {labels[r['b']]} = {_num(r['mean'])} points"
    if r["ci_low"] is None:
        return f"{what} (n = {r['n']}: no interval)"
    return (f"{what} (95% CI {_ci(r['ci_low'], r['ci_high'])}, paired p = {_p(r['p'])}, n = {r['n']}; "
            f"MDD {r['mdd']:.1f})")

