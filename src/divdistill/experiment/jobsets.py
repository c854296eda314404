"""The DAG's job sets beside grid.py's cells and paths: which distilled sets are measured, which sample
grids and Figure 1 inputs are copied, pure functions of the configuration. The Snakefile's rules and
inputs read them (workflow/rules/common.smk); nothing here lists a job a rule does not make.

    diversity_paths(cfg)  # Table 1's selected and generated sets, one diversity file per (distill_)seed
    upstream_jobs(cfg)    # the jobs that make the evaluated sets, by rule (benchmarks/cost.py counts them)
"""

from __future__ import annotations

from . import methods
from .grid import (DISTILLED, DIVERSITY, FIGURES, SAMPLE_GRID, SAMPLE_GRID_PER_IPC, cells, datasets_used, distill_seeds_for,
                   distilled)
from .names import base_method, finetuned_name


def distilled_sets(cfg: dict, datasets, candidates) -> list[tuple]:
    """(dataset, method, distill_seed, seed) of every selected or generated set of ``candidates``: the
    nested ones, and a per-IPC generative method's (MGD³, D⁴M: one (distill_seed, seed) stands for its
    set of every IPC). DM's optimised pixels are not among them."""
    kinds = methods.names("selection", "generative")
    return [(d, m, ds, s) for d in datasets for m in candidates if m in kinds
            for ds in distill_seeds_for(cfg, m) for s in cfg["seeds"]]


def in_a_table(cfg: dict, dataset: str, method: str) -> bool:
    return any(method in t["methods"] and dataset in t["datasets"] for t in cfg["tables"].values())


def diversity_paths(cfg: dict) -> list[str]:
    """Diversity and coverage: every selected and generated set of Table 1's datasets and methods."""
    t1 = cfg["tables"]["table1"]
    return [DIVERSITY.format(dataset=d, method=m, distill_seed=ds, seed=s)
            for d, m, ds, s in distilled_sets(cfg, t1["datasets"], t1["methods"])]


def diversity_sets(cfg: dict, dataset: str, method: str, distill_seed) -> list[str]:
    """The sets one diversity job measures: each seed's at the largest IPC (nested), or, seed-major, each
    seed's set of every IPC."""
    ipcs = cfg["ipc"] if methods.get(base_method(method)).per_ipc else [None]  # None: the one nested set
    return [distilled(dataset, method, distill_seed, s, ipc) for s in cfg["seeds"] for ipc in ipcs]


def sample_grids(cfg: dict) -> dict[str, str]:
    """reports/figures/samples-<dataset>-<method>.png -> the grid it copies: each generative method of a
    table, its first distillation seed (a per-IPC method's: its largest IPC's set)."""
    return {f"{FIGURES}/samples-{d}-{m}.png":
            SAMPLE_GRID_PER_IPC.format(dataset=d, method=m, ipc=max(cfg["ipc"]), distill_seed=ds)
            if methods.get(m).per_ipc else SAMPLE_GRID.format(dataset=d, method=m, distill_seed=ds)
            for d in datasets_used(cfg) for m in methods.names("generative")
            if in_a_table(cfg, d, m) and (cfg["ipc"] or not methods.get(m).per_ipc)
            for ds in distill_seeds_for(cfg, m)[:1]}


def figure1(cfg: dict) -> dict:
    """Figure 1's dataset (Table 1's first) and methods (Table 1's generative ones, DiT vs Ours at least)."""
    t1 = cfg["tables"]["table1"]
    return {"dataset": t1["datasets"][0], "methods": [m for m in methods.names("generative") if m in t1["methods"]]}


def figure1_sets(cfg: dict) -> dict[str, str]:
    """Each Figure 1 method's set: first distillation seed, first seed, a per-IPC method's largest set."""
    f = figure1(cfg)
    return {m: distilled(f["dataset"], m, distill_seeds_for(cfg, m)[0], cfg["seeds"][0], max(cfg["ipc"]))
            for m in f["methods"]}


def upstream_jobs(cfg: dict) -> dict[str, set[tuple]]:
    """The jobs that make the sets the evaluation cells (tables and sweeps) read, and their inputs, by
    rule, each job once as its wildcards: select (dataset, method), synthesize (dataset, method, ipc,
    seed), sample (dataset, method, distill_seed), sample_per_ipc (... , ipc), finetune (dataset,
    fine-tuned method, distill_seed), features and encode (dataset). What Snakemake's dry run plans for
    them (tests/test_workflow.py compares the counts)."""
    jobs: dict[str, set[tuple]] = {k: set() for k in ("select", "synthesize", "sample", "sample_per_ipc", "finetune",
                                                     "features", "encode")}
    for c in cells(cfg):
        if c.method == "full":
            continue
        spec, d, m = methods.get(base_method(c.method)), c.dataset, c.method
        if spec.kind == "selection":
            jobs["select"].add((d, m))
            jobs["features"].update([(d,)] if spec.features else [])
        elif spec.kind == "synthesis":
            jobs["synthesize"].update((d, m, c.ipc, s) for s in cfg["seeds"])
        elif spec.kind == "generative":
            jobs["sample_per_ipc" if spec.per_ipc else "sample"].add((d, m, c.distill_seed, *([c.ipc] if spec.per_ipc else [])))
            tuned = finetuned_name(m)
            jobs["finetune"].update([(d, tuned, c.distill_seed)] if tuned else [])
            jobs["encode"].update([(d,)] if tuned or methods.SAMPLERS[spec.sampler].needs_real else [])
    t1 = cfg["tables"]["table1"]  # the diversity jobs read the latents and the features of Table 1's datasets
    if distilled_sets(cfg, t1["datasets"], t1["methods"]):
        jobs["features"].update((d,) for d in t1["datasets"])
        jobs["encode"].update((d,) for d in t1["datasets"])
    f1 = figure1(cfg)
    if f1["methods"]:
        jobs["encode"].add((f1["dataset"],))
    return jobs
