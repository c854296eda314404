"""What each method's distilled sets cost to build, from the jobs' own Snakemake benchmark records.

A method's cost is the core-seconds (wall seconds x the job's threads; GPU-seconds at paper scale, one
GPU a job) of the jobs that made its sets: a selection's select job, a synthesis method's job per (IPC,
seed), a generative method's sampling jobs and its own fine-tuning (a ``recipe`` method samples another
method's fine-tuned DiT: that fine-tuning is counted under its owner, and named). Work several methods
share is stated once and apart: the demo's VAE and DiT pretraining, each dataset's latent cache (the
fine-tuning, MGD³'s modes and D⁴M's prototypes read it) and the feature ConvNet (K-Center, Herding).
The evaluation is the protocol's cost, not a set's, and is left out.

Timings vary from run to run, so the cost table is a file of its own (``reports/tables/cost.md``,
``reports/cost.json``, ``reports/figures/cost.png``): the accuracy tables stay byte-identical.
"""

from __future__ import annotations

from pathlib import Path

from ..experiment import methods, names
from ..experiment.grid import BENCHMARKS, distill_seeds_for
from ..io import read_tsv
from .writer import markdown

SHARED = {"pretrain_vae": "the demo's VAE pretraining", "pretrain_dit": "the demo's DiT pretraining",
          "encode": "the latent cache", "features": "the feature ConvNet"}


def job_records(cfg: dict) -> dict:
    """{"methods": {method: {dataset: [(rule, benchmark path, threads)]}}, "shared": {(rule, dataset):
    (path, threads)}, "borrowed": {method: recipe}} for every table's methods and datasets."""
    th = {"select": cfg["baselines"]["threads"], "synthesize": cfg["baselines"]["threads"],
          "features": cfg["baselines"]["threads"], "finetune": cfg["finetune"]["threads"],
          "encode": cfg["finetune"]["threads"], "sample": cfg["sample"]["threads"],
          "sample_per_ipc": cfg["sample"]["threads"], "pretrain_vae": cfg["pretrain"].get("threads", 1),
          "pretrain_dit": cfg["pretrain"].get("threads", 1)}
    used: dict[str, set] = {}
    for t in cfg["tables"].values():
        for m in t["methods"]:
            used.setdefault(m, set()).update(t["datasets"])
    out: dict = {"methods": {}, "shared": {}, "borrowed": {}}
    charged: set[str] = set()  # a fine-tuning two table methods sample (ours, ours-guidance-2): charged once

    def job(rule, **kw):
        return rule, BENCHMARKS[rule].format(**kw), th[rule]

    if cfg["generator"]["pretrain"] and any(methods.get(names.base_method(m)).kind == "generative" for m in used):
        out["shared"].update({(r, None): (BENCHMARKS[r], th[r]) for r in ("pretrain_vae", "pretrain_dit")})
    for name in sorted(used, key=lambda n: (methods.names().index(names.base_method(n)), n)):  # column order
        datasets, m = used[name], methods.get(names.base_method(name))
        if m.kind == "upper_bound":  # the whole training set: nothing is built
            continue
        for d in sorted(datasets):
            jobs = []
            if m.kind == "selection":
                jobs.append(job("select", dataset=d, method=name))
                if m.features:
                    out["shared"][("features", d)] = (BENCHMARKS["features"].format(dataset=d), th["features"])
            elif m.kind == "synthesis":
                jobs += [job("synthesize", dataset=d, method=name, ipc=ipc, seed=s)
                         for ipc in cfg["ipc"] for s in cfg["seeds"]]
            elif m.kind == "generative":
                for ds in distill_seeds_for(cfg, name):
                    if m.per_ipc:
                        jobs += [job("sample_per_ipc", dataset=d, method=name, ipc=ipc, distill_seed=ds)
                                 for ipc in cfg["ipc"]]
                    else:
                        jobs.append(job("sample", dataset=d, method=name, distill_seed=ds))
                    if m.finetuned:
                        tuned = job("finetune", dataset=d, method=names.finetuned_name(name), distill_seed=ds)
                        if tuned[1] in charged:
                            out["borrowed"][name] = names.finetuned_name(name)
                        else:
                            charged.add(tuned[1])
                            jobs.append(tuned)
                if m.finetuned or methods.SAMPLERS[m.sampler].needs_real:
                    out["shared"][("encode", d)] = (BENCHMARKS["encode"].format(dataset=d), th["encode"])
                if m.recipe:
                    out["borrowed"][name] = m.recipe  # counted under its owner (or, not in a table, nowhere)
            out["methods"].setdefault(name, {})[d] = jobs
    return out


def costs(cfg: dict, root=".") -> dict:
    """Core-seconds per method and dataset (and its jobs' count), and of the shared work, from the
    benchmark records under ``root``; a missing record is an error naming it."""
    rec = job_records(cfg)

    def wall(path):
        return float(read_tsv(Path(root) / path)[0]["s"])

    by_method = {m: {d: {"jobs": len(jobs), "core_seconds": round(sum(wall(p) * t for _, p, t in jobs), 2),
                         "wall_seconds": round(sum(wall(p) for _, p, _ in jobs), 2)}
                     for d, jobs in per_d.items()} for m, per_d in rec["methods"].items()}
    shared = {(rule if d is None else f"{rule}/{d}"): round(wall(p) * t, 2) for (rule, d), (p, t) in rec["shared"].items()}
    return {"methods": by_method, "shared": shared, "borrowed": rec["borrowed"], "unit": UNIT}


UNIT = ("core-seconds: each job's wall seconds (its Snakemake benchmark record) x the threads params.yaml gives "
        "it (a profile's set-threads and the demo DiT pretraining's idle-core growth are not seen); "
        "wall_seconds: their sum, GPU-seconds at paper scale with one GPU a job")


def _label(name: str) -> str:
    """A method's column label; a variant's is its base's with its settings (Ours, guidance 2)."""
    base, over = names.split_method(name)
    return methods.label(base) + "".join(f", {k.replace('_', ' ')} {v:g}" for k, v in over.items())


def render_cost(cfg: dict, cost: dict) -> str:
    order = sorted(cost["methods"], key=lambda n: (methods.names().index(names.base_method(n)), n))
    datasets = sorted({d for per_d in cost["methods"].values() for d in per_d})
    out = ["# What each distilled set costs to build", "",
           "Core-seconds (each job's wall seconds from its Snakemake benchmark record x the threads "
           "params.yaml gives it; at paper scale, one GPU a job, read `wall_seconds` in cost.json as "
           "GPU-seconds) of the jobs that made each method's sets, every seed and IPC of the tables "
           "together. Timings vary from run to run (this table is not part of the accuracy tables). Shared "
           "work, below, is counted once and in no column; a fine-tuning two columns sample is counted in "
           "the first. The evaluation is left out.", ""]
    rows = []
    for m in order:
        cells = []
        for d in datasets:
            c = cost["methods"][m].get(d)
            cells.append("–" if c is None else f"{c['core_seconds']:.1f} ({c['jobs']} job{'s' if c['jobs'] != 1 else ''})")
        note = f" (+ {_label(cost['borrowed'][m])}'s fine-tuning)" if m in cost["borrowed"] else ""
        rows.append([f"{_label(m)}{note}", *cells])
    out += markdown(["Method", *datasets], rows, 1)
    out += ["", "Shared work (core-seconds):", ""]
    out += [f"- {SHARED[k.split('/')[0]]}{' (' + k.split('/')[1] + ')' if '/' in k else ''}: {v:.1f}"
            for k, v in sorted(cost["shared"].items())] or ["- none"]
    return "\n".join(out) + "\n"


def cost_figure(cfg: dict, cost: dict, metrics: dict, png, pdf) -> None:
    """Final-epoch accuracy (Table 1's first row, hard protocol) against each method's build cost, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path
    from .figures import NO_DATE

    t = cfg["tables"]["table1"]
    d, ipc, model = t["datasets"][0], cfg["ipc"][0], t["models"][0]
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in methods.names():
        c = cost["methods"].get(m, {}).get(d)
        acc = metrics.get("table1", {}).get(d, {}).get(m, {}).get(f"ipc{ipc}", {}).get(model, {}).get("hard")
        if c is None or acc is None or c["core_seconds"] <= 0:
            continue
        ax.errorbar(c["core_seconds"], acc["mean"], yerr=acc["std"], fmt="o", capsize=3)
        ax.annotate(_label(m), (c["core_seconds"], acc["mean"]), textcoords="offset points", xytext=(5, 3),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("build cost (core-seconds, shared work excluded)")
    ax.set_ylabel(f"final-epoch top-1 (%), {d}, IPC {ipc}")
    fig.tight_layout()
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, metadata=NO_DATE[fmt])
    plt.close(fig)
