"""DD-Ranking's label- and augmentation-robust scores (Li et al. 2025, NUS-HPC-AI-Lab/DD-Ranking v0.2.0,
``ddranking/metrics/soft_label.py`` L561-564 and ``aug_robust.py`` L577-580), computed per evaluation
seed on accuracies as **fractions**:

    HLR = A_real^hard - A_syn^hard         hard-label recovery (lower: the set recovers more of real data)
    IOR = A_syn^soft  - A_rdm^soft         improvement over random real images under soft labels
    alpha = lam IOR - (1 - lam) HLR,       lam = 0.5
    LRS = (e^alpha - e^-1) / (e - e^-1)    in [0, 1] since alpha in [-1, 1]

    beta = gam (A_syn^aug - A_rdm^aug) + (1 - gam)(A_syn^noaug - A_rdm^noaug),   gam = 0.5
    ARS  = (e^beta - e^-1) / (e - e^-1)

A_real is Full (the hard protocol on the whole training set; the mean over its seeds, as DD-Ranking's
cached full-data accuracy), A_rdm Random at the same IPC, test network and seed. ARS is computed for
each label kind whose protocol and ``-noaug`` twin a table holds (DD-Ranking's default: soft).
Unlike the reference code: fractions, not percent, go into exp (there LRS leaves [0, 1]); one value per
seed (it appends each twice); nothing chosen on the test set (it picks each learning rate by the best
test accuracy); every seed paired with the other methods' (it seeds from the clock). Each method's mean
score comes with its 95% t interval, and the tables' comparisons with paired CI, p and MDD (stats.py).
"""

from __future__ import annotations

import math

import numpy as np

from ..evaluate.protocols import HARD
from ..experiment import methods
from ..experiment.grid import ipc_label, protocols_of, table_layout
from .compare import pairs_of
from .stats import paired

LAMBDA = GAMMA = 0.5  # DD-Ranking's defaults (lrs_lambda, ars_lambda)
SCORES = {"lrs": "LRS", "ars-hard": "ARS (hard labels)", "ars-soft": "ARS (soft labels)"}


def squash(x: float) -> float:
    """(e^x - e^-1) / (e - e^-1): maps [-1, 1] onto [0, 1], increasing; x must be a finite fraction."""
    if not math.isfinite(x) or not -1 <= x <= 1:
        raise ValueError(f"a robust score's exponent must lie in [-1, 1] (accuracies as fractions), got {x}")
    return (math.exp(x) - math.exp(-1)) / (math.e - math.exp(-1))


def lrs(real_hard: float, syn_hard: float, syn_soft: float, rdm_soft: float, lam: float = LAMBDA) -> float:
    """The label-robust score of one seed from four accuracies (fractions in [0, 1])."""
    return squash(lam * (syn_soft - rdm_soft) - (1 - lam) * (real_hard - syn_hard))


def ars(syn_aug: float, rdm_aug: float, syn_noaug: float, rdm_noaug: float, gam: float = GAMMA) -> float:
    """The augmentation-robust score of one seed (fractions in [0, 1])."""
    return squash(gam * (syn_aug - rdm_aug) + (1 - gam) * (syn_noaug - rdm_noaug))


def _per_seed(a: dict | None) -> dict[int, float]:
    """seed -> accuracy as a fraction (a fine-tuned method's distillation seeds averaged, as stats.pair_up)."""
    if a is None:
        return {}
    by_seed: dict[int, list[float]] = {}
    for (_, seed), v in zip(map(tuple, a["seeds"]), a["values"]):
        by_seed.setdefault(seed, []).append(v / 100)
    return {s: sum(vs) / len(vs) for s, vs in by_seed.items()}


def _score_values(score: str, m: str, agg: dict, row: tuple) -> dict[int, float]:
    """seed -> one score of method m on one table row (dataset, ipc, model), for the seeds every input has."""
    d, ipc, model = row

    def acc(method, protocol):
        return _per_seed(agg.get((d, method, None if method == "full" else ipc, model, protocol)))

    if score == "lrs":
        full = acc("full", HARD)
        inputs = [acc(m, HARD), acc(m, "soft"), acc("random", "soft")]
        if not full or not all(inputs):
            return {}
        real = float(np.mean(list(full.values())))
        seeds = sorted(set.intersection(*(set(x) for x in inputs)))
        return {s: lrs(real, inputs[0][s], inputs[1][s], inputs[2][s]) for s in seeds}
    labels = score.split("-")[1]
    inputs = [acc(m, labels), acc("random", labels), acc(m, labels + "-noaug"), acc("random", labels + "-noaug")]
    if not all(inputs):
        return {}
    seeds = sorted(set.intersection(*(set(x) for x in inputs)))
    return {s: ars(*(x[s] for x in inputs)) for s in seeds}


def scores_of(cfg: dict, table: str) -> list[str]:
    """The robust scores a table's protocols support."""
    have = set(protocols_of(cfg, table))
    return [s for s, needs in (("lrs", {"hard", "soft"}), ("ars-hard", {"hard", "hard-noaug"}),
                               ("ars-soft", {"soft", "soft-noaug"})) if needs <= have]


def scores(cfg: dict, agg: dict) -> list[dict]:
    """Every method's robust scores on every table row: dicts with table, dataset, ipc, model, score,
    method, seeds, values, and n, mean, ci_low, ci_high (the 95% t interval of the mean over seeds).
    Random's ARS is a constant by definition and Full has none: neither is listed."""
    out = []
    for table, t in cfg["tables"].items():
        rows = list(dict.fromkeys(r[:3] for r in table_layout(cfg, table)[0]))  # (dataset, ipc, model)
        for score in scores_of(cfg, table):
            for row in rows:
                for m in [m for m in methods.names() if m in t["methods"] and m != "full"]:
                    if m == "random" and score != "lrs":
                        continue
                    vals = _score_values(score, m, agg, row)
                    if not vals:
                        continue
                    stats = paired(list(vals.values()), [0.0] * len(vals))
                    out.append({"table": table, "dataset": row[0], "ipc": row[1], "model": row[2], "score": score,
                                "method": m, "seeds": list(vals), "values": list(vals.values()), "n": stats.n,
                                "mean": stats.mean, "ci_low": stats.ci_low, "ci_high": stats.ci_high})
    return out


def differences(cfg: dict, found: list[dict]) -> list[dict]:
    """The tables' comparisons (compare.pairs_of) on each robust score: paired by seed, stats.Paired's
    fields (score units) with table, dataset, ipc, model, score, a, b."""
    index = {(r["table"], r["dataset"], r["ipc"], r["model"], r["score"], r["method"]): r for r in found}
    out = []
    for (table, d, ipc, model, score, a), ra in index.items():
        for pa, b in pairs_of(cfg["tables"][table]["methods"]):
            rb = index.get((table, d, ipc, model, score, b))
            if pa != a or rb is None:
                continue
            shared = [s for s in ra["seeds"] if s in rb["seeds"]]
            if not shared:
                continue
            va, vb = dict(zip(ra["seeds"], ra["values"])), dict(zip(rb["seeds"], rb["values"]))
            out.append({"table": table, "dataset": d, "ipc": ipc, "model": model, "score": score, "a": a, "b": b,
                        **paired([va[s] for s in shared], [vb[s] for s in shared]).as_dict()})
    return out


def parent_metrics(found: list[dict], dataset: str, method: str, ipc: int | None, model: str) -> dict[str, float]:
    """A method's scores for its hard table-cell run: <score>_mean / _ci_low / _ci_high (defined values)."""
    out = {}
    for r in found:
        if (r["dataset"], r["method"], r["ipc"], r["model"]) == (dataset, method, ipc, model):
            name = r["score"].replace("-", "_")
            out.update({f"{name}_{k}": r[k] for k in ("mean", "ci_low", "ci_high") if r[k] is not None})
    return out


def _f(x, fmt=".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _ci(lo, hi, fmt=".3f") -> str:
    return "n/a" if lo is None else f"[{lo:{fmt}}, {hi:{fmt}}]"


EXPLAIN = ("DD-Ranking's robust scores (docs/protocol.md), per evaluation seed from the accuracies as fractions, "
           "then the mean over seeds with its 95% t interval. LRS (label-robust score): 0.5·IOR − 0.5·HLR "
           "through (e^x − e^−1)/(e − e^−1), where HLR = Full's hard-label accuracy − the set's (Full: the mean "
           "over its seeds) and IOR = the set's soft-label accuracy − Random's at the same seed; higher is "
           "better: 0.269 (an exponent of 0) where the soft-label gain over Random makes up for the hard-label "
           "gap to Full, 1 for a set as good as Full under hard labels and 100 points above Random under "
           "soft ones. ARS "
           "(augmentation-robust score): the set's gain over Random with and without training augmentation, "
           "averaged, through the same map: Random's own ARS is 0.269 (no gain), so it is not listed, nor "
           "compared with. Differences: paired by seed, with 95% t interval, paired t-test p "
           "and the minimum detectable difference (80% power, α = 0.05).")


def table_rows(found: list[dict], diffs: list[dict]) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(head, rows) of the scores and (head, rows) of their differences, as the renderers print them."""
    from ..evaluate.names import net_label

    head = ["Table", "Dataset", "IPC", "Test model", "Score", "Method", "n", "Mean", "95% CI"]
    rows = [[r["table"], r["dataset"], ipc_label(r["ipc"]), net_label(r["model"]), SCORES[r["score"]],
             methods.label(r["method"]), str(r["n"]), _f(r["mean"]), _ci(r["ci_low"], r["ci_high"])] for r in found]
    dhead = ["Table", "Dataset", "IPC", "Test model", "Score", "Comparison", "n", "Δ", "95% CI", "p (paired t)", "MDD"]
    drows = [[r["table"], r["dataset"], ipc_label(r["ipc"]), net_label(r["model"]), SCORES[r["score"]],
              f"{methods.label(r['a'])} − {methods.label(r['b'])}", str(r["n"]), _f(r["mean"], "+.3f"),
              _ci(r["ci_low"], r["ci_high"], "+.3f"), "n/a" if r["p"] is None else f"{r['p']:.2g}", _f(r["mdd"])]
             for r in diffs]
    return head, rows, dhead, drows


def render(found: list[dict], diffs: list[dict], ext: str) -> str:
    """reports/tables/robust.{md,tex,html}: the scores, then their differences."""
    from .writer import document

    head, rows, dhead, drows = table_rows(found, diffs)
    return document(ext, "Robust scores: LRS and ARS (DD-Ranking), per seed, with intervals", [EXPLAIN],
                    [("Scores", head, rows, 6), ("Differences between methods", dhead, drows, 6)])


def metrics_tree(found: list[dict], diffs: list[dict]) -> dict:
    """table -> dataset -> score -> method or "a-vs-b" -> ipc<k> -> model -> {mean, ci_low, ci_high, n[, p, mdd]}."""
    tree: dict = {}
    for r in found + diffs:
        name = r["method"] if "method" in r else f"{r['a']}-vs-{r['b']}"
        node = tree.setdefault(r["table"], {}).setdefault(r["dataset"], {}).setdefault(r["score"], {})
        node.setdefault(name, {}).setdefault(f"ipc{ipc_label(r['ipc'])}", {})[r["model"]] = {
            k: (None if r.get(k) is None else round(r[k], 4)) for k in ("mean", "ci_low", "ci_high", "p", "mdd")
            if k in r} | {"n": r["n"]}
    return tree
