"""The experiment grid: every job's cell, enumerated once, and every path template, spelled once.

The Snakefile's rules and the Python code (tables, study, cost model) import both from here.
Templates use Snakemake's wildcard syntax, which is also ``str.format``'s:

    EVAL.format(dataset="fashion-hard", method="ours", ipc=10, model="convnet", distill_seed=0, seed=3)

An ``ipc`` (images per class) is an int for every distilled set and None for Full, the upper bound
(the whole training set); ``ipc_label`` writes it as text ("10", "all": paths and wildcards, table
cells, metrics keys, MLflow tags) and ``parse_ipc`` reads such text back.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..evaluate import protocols
from . import methods
from .names import SWEEP_KEYS, base_method, variant_name


class ConfigError(ValueError):
    """params.yaml is at fault; the message names the key."""


# ----------------------------------------------------------------------------- ipc

_FULL_LABEL = "all"  # Full's ipc as text: its wildcard (results/eval/.../full/ipcall/...), its table cells


def ipc_label(ipc: int | None) -> str:
    """An ipc as text: "10", or "all" for Full (None)."""
    return _FULL_LABEL if ipc is None else str(ipc)


def parse_ipc(text: str | int) -> int | None:
    """An ipc wildcard or result file's ipc ("10", "all") as the value: int, or None for Full."""
    return None if text == _FULL_LABEL else int(text)


# ----------------------------------------------------------------------------- paths

DATA = "results/data/{dataset}"  # prepare: meta.json, train/test.safetensors
META = DATA + "/meta.json"
FEATURES = "results/features/{dataset}"  # the feature ConvNet (K-Center, Herding, PRDC's embedding)
LATENTS = "results/latents/{dataset}.safetensors"  # VAE posterior of every training image and its flip
FINETUNED = "results/finetuned/{dataset}/{method}/distill{distill_seed}"
# outside the output: Snakemake deletes a failed job's output, a checkpoint must survive
FINETUNE_CHECKPOINTS = "results/checkpoints/finetune/{dataset}/{method}/distill{distill_seed}"
DISTILLED = "results/distilled/{dataset}/{method}/distill{distill_seed}-seed{seed}.safetensors"
DISTILLED_PER_IPC = "results/distilled/{dataset}/{method}/ipc{ipc}/distill{distill_seed}-seed{seed}.safetensors"
SAMPLE_GRID = "results/figures/samples/{dataset}-{method}-distill{distill_seed}.png"
SAMPLE_GRID_PER_IPC = "results/figures/samples/{dataset}-{method}-ipc{ipc}-distill{distill_seed}.png"
EVAL = "results/eval/{dataset}/{method}/ipc{ipc}/{model}/{protocol}/distill{distill_seed}-seed{seed}.json"
# the soft protocol's teacher: the whole training set, hard protocol, one per (dataset, test network)
TEACHER = "results/teachers/{dataset}/{model}"
TEACHER_NET = TEACHER + "/teacher.safetensors"  # the network
TEACHER_RESULT = TEACHER + "/teacher.json"  # its run's result: test accuracy, run id
DIVERSITY = "results/diversity/{dataset}/{method}/distill{distill_seed}-seed{seed}.json"
# Each job's name under results/logs/<name>.log and results/benchmarks/<name>.tsv (Snakemake's record:
# wall s; the cost table, report/cost.py, multiplies it by the job's threads: core-seconds)
EVAL_CELL = "{dataset}/{method}/ipc{ipc}/{model}/{protocol}/distill{distill_seed}"  # checkpoints: <EVAL_CELL>/seed<k>
JOB_NAMES = {
    "prepare": "prepare/{dataset}", "pretrain_vae": "pretrain/vae", "pretrain_dit": "pretrain/dit",
    "encode": "encode/{dataset}", "features": "features/{dataset}",
    "finetune": "finetune/{dataset}/{method}/distill{distill_seed}",
    "sample": "sample/{dataset}/{method}/distill{distill_seed}",
    "sample_per_ipc": "sample/{dataset}/{method}/ipc{ipc}/distill{distill_seed}",
    "select": "select/{dataset}/{method}", "synthesize": "synthesize/{dataset}/{method}/ipc{ipc}/seed{seed}",
    "diversity": "diversity/{dataset}/{method}/distill{distill_seed}",
    "evaluate": "evaluate/" + EVAL_CELL, "evaluate_seed": "evaluate/" + EVAL_CELL + "-seed{seed}",
    "teacher": "teacher/{dataset}/{model}",
    "figure1": "figure1", "parents": "parents", "render": "render", "cost": "cost", "render_study": "render_study",
}
LOGS = {job: f"results/logs/{name}.log" for job, name in JOB_NAMES.items()}
BENCHMARKS = {job: f"results/benchmarks/{name}.tsv" for job, name in JOB_NAMES.items()}
JOB_SERVER_LOG = "results/logs/jobserver.log"
CHECKPOINTS = {"pretrain": "results/checkpoints/pretrain", "evaluate": "results/checkpoints/evaluate/" + EVAL_CELL,
               "teacher": "results/checkpoints/teacher/{dataset}/{model}"}
COST_TABLE = "reports/tables/cost.md"  # timings vary from run to run: apart from the accuracy tables
COST = "reports/cost.json"
COST_FIGURE = "reports/figures/cost.{ext}"
EVIDENCE = "results/evidence.json"  # the result files (and sha256) each rendered cell was made from
PARENTS = "results/parents.json"  # the MLflow run of every table cell (tracking/parents.py)
HISTORY = "results/history"  # io.keep: every finished output, copied, by MLflow run id

TABLE = "reports/tables/{table}.{ext}"
COMPARISONS = "reports/tables/comparisons.{ext}"
ROBUST = "reports/tables/robust.{ext}"  # DD-Ranking's LRS / ARS (report/robust.py)
DIVERSITY_TABLE = "reports/tables/diversity.md"
METRICS = "reports/metrics.json"
CURVES = "reports/plots/curves"
SWEEP_PLOTS = "reports/plots/sweeps"  # Figure 4's points, for DVC
FIGURES = "reports/figures"
STUDY = "reports/study"
TABLE_EXTS = ("md", "tex", "html")


def distilled(dataset: str, method: str, distill_seed: int, seed: int, ipc: int | None = None) -> str:
    """A distilled set's file; a synthesis method (DM) and a k-means sampler (MGD³, D⁴M) have one per IPC."""
    kw = dict(dataset=dataset, method=method, distill_seed=distill_seed, seed=seed)
    per_ipc = methods.get(base_method(method)).per_ipc
    return DISTILLED_PER_IPC.format(ipc=ipc_label(ipc), **kw) if per_ipc else DISTILLED.format(**kw)


def _finetuned(method: str) -> bool:
    """Samples a fine-tuned DiT (its own or its recipe's): one set per fine-tuning seed."""
    return methods.get(base_method(method)).generator is not None


# ----------------------------------------------------------------------------- cells

@dataclass(frozen=True)
class Cell:
    """One evaluation job: a grid cell of params.yaml."""

    dataset: str
    method: str
    ipc: int | None  # images per class; None: Full, the whole training set
    model: str
    distill_seed: int  # the fine-tuning's seed; 0 for methods that fine-tune nothing
    seed: int
    protocol: str = protocols.HARD  # evaluate/protocols.py

    @property
    def path(self) -> str:
        return EVAL.format(**{**vars(self), "ipc": ipc_label(self.ipc)})


def ipcs_for(cfg: dict, method: str) -> list[int | None]:
    return [None] if method == "full" else list(cfg["ipc"])


def seeds_for(cfg: dict, method: str) -> list[int]:
    """The evaluation seeds of a method: all of ``seeds``, but for Full (an upper bound, compared with
    nothing) only the first ``evaluate.seeds_full`` of them when that is set."""
    n = cfg.get("evaluate", {}).get("seeds_full") if method == "full" else None
    return list(cfg["seeds"]) if n is None else list(cfg["seeds"])[:n]


def protocols_of(cfg: dict, table: str) -> list[str]:
    """A table's protocols: its own ``protocols``, else ``evaluate.protocols``, else hard."""
    return list(cfg["tables"][table].get("protocols") or cfg.get("evaluate", {}).get("protocols") or [protocols.HARD])


def protocols_for(cfg: dict, table: str, method: str) -> list[str]:
    """The protocols a method's cells run under: Full (the upper bound, and the robust scores' A_real)
    under the hard protocol only."""
    return [p for p in protocols_of(cfg, table) if method != "full" or p == protocols.HARD]


def distill_seeds_for(cfg: dict, method: str) -> list[int]:
    return list(cfg["distill_seeds"]) if _finetuned(method) else [0]


def sweep_points(cfg: dict) -> list[tuple[str, object, str]]:
    """(key, value, method name) of every Figure 4 point; the point at the finetune value is the
    base method itself (its Table 1 runs are reused)."""
    sw = cfg.get("sweeps")
    if not sw:
        return []
    points = []
    for key in SWEEP_KEYS:
        for value in sw.get(key, []):
            same = value == cfg["finetune"][key]
            points.append((key, value, sw["method"] if same else variant_name(sw["method"], key, value)))
    return points


def sweep_cells(cfg: dict) -> list[Cell]:
    sw = cfg.get("sweeps")
    if not sw:
        return []
    return [Cell(sw["dataset"], m, ipc, sw["model"], ds, seed)
            for _, _, m in sweep_points(cfg) for ipc in cfg["ipc"]
            for ds in distill_seeds_for(cfg, m) for seed in seeds_for(cfg, m)]


def study_points(cfg: dict) -> list[dict]:
    """Every point of the study grid: {"method", "max_steps", "guidance", "name"} in the study's
    method order, then length, then guidance. max_steps is None for DiT (nothing is fine-tuned);
    a value equal to params.yaml's keeps the base name, so the demo's runs are shared."""
    st = cfg.get("study")
    if not st:
        return []
    points = []
    for m in st["methods"]:
        tuned = methods.get(m).finetuned
        for steps in st["max_steps"] if tuned else [None]:
            for g in st["guidance"]:
                over = {}
                if steps is not None and steps != cfg["finetune"].get("max_steps"):
                    over["max_steps"] = steps
                if float(g) != float(cfg["sample"]["guidance"]):
                    over["guidance"] = g
                points.append({"method": m, "max_steps": steps, "guidance": float(g),
                               "name": variant_name(m, **over)})
    return points


def study_distill_seeds(cfg: dict, method: str) -> list[int]:
    return list(cfg["study"]["distill_seeds"]) if _finetuned(method) else [0]


def study_cells(cfg: dict) -> list[Cell]:
    """Every evaluation of the study: each point at every ipc, distillation seed and seed."""
    st = cfg.get("study")
    if not st:
        return []
    return [Cell(st["dataset"], p["name"], ipc, st["model"], ds, seed)
            for p in study_points(cfg) for ipc in cfg["ipc"]
            for ds in study_distill_seeds(cfg, p["name"]) for seed in cfg["seeds"]]


def table_layout(cfg: dict, table: str):
    """Rows (dataset, ipc, model, protocol), protocol-major (a row group per protocol), and columns
    (method, is_reported) of one table, in the paper's order: a method's published numbers sit right
    after our run of it."""
    t = cfg["tables"][table]
    columns = []
    for m in methods.names():
        if m in t["methods"]:
            columns.append((m, False))
        if m in t.get("reported", []):
            columns.append((m, True))
    rows = [(d, ipc, model, p) for p in protocols_of(cfg, table)
            for d in t["datasets"] for ipc in cfg["ipc"] for model in t["models"]]
    return rows, columns


def table_cells(cfg: dict, table: str) -> list[Cell]:
    t = cfg["tables"][table]
    return [Cell(d, m, ipc, model, ds, seed, p)
            for p in protocols_of(cfg, table) for d in t["datasets"] for m in t["methods"] if p in protocols_for(cfg, table, m)
            for ipc in ipcs_for(cfg, m) for model in t["models"] for ds in distill_seeds_for(cfg, m)
            for seed in seeds_for(cfg, m)]


def teachers(cfg: dict) -> list[tuple[str, str]]:
    """(dataset, model) of every teacher a soft protocol reads, each once."""
    return sorted({(c.dataset, c.model) for c in cells(cfg) if protocols.get(c.protocol).labels == "soft"})


def cells(cfg: dict) -> list[Cell]:
    """Every evaluation job of the config, each once: table order, then the sweeps."""
    seen = {}
    for table in cfg["tables"]:
        for c in table_cells(cfg, table):
            seen.setdefault(c, None)
    for c in sweep_cells(cfg):
        seen.setdefault(c, None)
    return list(seen)


def datasets_used(cfg: dict) -> list[str]:
    used = {d for t in cfg["tables"].values() for d in t["datasets"]}
    for extra in ("sweeps", "study"):
        if cfg.get(extra):
            used.add(cfg[extra]["dataset"])
    return sorted(used)


def epochs_for(cfg: dict, ipc: int | None, protocol: str = protocols.HARD) -> int:
    """The evaluation's epochs at an IPC (None: Full's): the soft protocols' own table when evaluate.soft has one."""
    ev = cfg["evaluate"]
    if ipc is None:
        return ev["epochs_full"]
    table = ev["epochs"]
    if protocols.get(protocol).labels == "soft":
        table = ev["soft"].get("epochs", table)
    for rule in table:  # sorted by max_ipc: the first rule that covers the IPC
        if ipc <= rule["max_ipc"]:
            return rule["epochs"]
    raise ConfigError(f"evaluate.epochs: no entry covers IPC {ipc}")


def teacher_epochs(cfg: dict) -> int:
    """The soft protocol's teacher trains on the whole training set: evaluate.teacher.epochs, else Full's."""
    ev = cfg["evaluate"]
    return ev.get("teacher", {}).get("epochs", ev["epochs_full"])


def datasets_prepared(cfg: dict) -> list[str]:
    """Every dataset a job reads: the tables' and, for the demo, the pretraining set."""
    used = set(datasets_used(cfg))
    if cfg["generator"]["pretrain"]:
        used.add(cfg["pretrain"]["dataset"])
    return sorted(used)
