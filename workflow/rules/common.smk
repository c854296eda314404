# Validation, grid enumeration, input functions and wildcard constraints.
import json
import os

from snakemake.utils import validate

from divdistill.experiment import config as dd

# nan/inf first (no schema bound rejects them), then types, ranges and unknown keys (the schema),
# then relations between keys.
try:
    dd.check_finite(config)
    validate(config, "../schemas/params.schema.yaml")
    dd.check(config)
except dd.ConfigError as e:
    raise ValueError(str(e)) from None

CELLS = dd.cells(config)
# evaluate.one_job_per: "cell" runs every seed of a table cell in one process (the demo: a job's
# start-up, ~4.5 s of imports and MLflow, is paid once per cell); "seed" one job per seed (paper
# scale: seeds in parallel on a cluster).
EVAL_PER_CELL = config["evaluate"].get("one_job_per", "seed") == "cell"
TABLES = list(config["tables"])
# Jobs find the MLflow settings in their environment rather than in params;
# changing where runs are logged must not re-run the experiments.
os.environ.update(DIVDISTILL_TRACKING=json.dumps(config["mlflow"]))
# Every finished output is also hard-linked under results/history/<output>/<MLflow run id> (io.keep):
# Snakemake deletes an output before re-running its job, and a rerun that fails must not lose it.
os.environ.update(DIVDISTILL_HISTORY="results/history")


# The mechanism study (config/study.yaml): its evaluations, its distilled sets' diversity, its outputs.
STUDY_CELLS = dd.study_cells(config)
STUDY_DIVERSITY = sorted({f"results/diversity/{c.dataset}/{c.method}/distill{c.distill_seed}-seed{c.seed}.json"
                          for c in STUDY_CELLS})
STUDY_DIR = "reports/study"
STUDY_OUTPUTS = [f"{STUDY_DIR}/{f}" for f in ("study.md", "study.html", "metrics.json", "figure.png", "figure.pdf")]

# The paired comparisons of every table row (compare.py), written by the render job.
COMPARISONS = [f"reports/tables/comparisons.{ext}" for ext in ("md", "tex", "html")]


def all_targets():
    return [*expand("reports/tables/{table}.{ext}", table=TABLES, ext=["md", "tex", "html"]), "reports/metrics.json",
            "reports/tables/diversity.md", *COMPARISONS, *FIGURES, *SWEEP_FIGURES, *FIGURE1_FILES]


def distilled_sets(datasets, methods):
    """(dataset, method, distill_seed, seed) of every distilled set the grid evaluates at all IPCs at once
    (DM's per-IPC sets are not among them)."""
    return [(d, m, ds, s) for d in datasets for m in methods if m != "full" and m not in dd.SYNTHESIS_METHODS
            for ds in dd.distill_seeds_for(config, m) for s in config["seeds"]]


# Diversity and coverage: every distilled set of Table 1's datasets and methods.
DIVERSITY = [f"results/diversity/{d}/{m}/distill{ds}-seed{s}.json"
             for d, m, ds, s in distilled_sets(config["tables"]["table1"]["datasets"], config["tables"]["table1"]["methods"])]
# Sample grids of the generative methods (first distillation seed, first seed) copied to reports/figures.
GRIDS = {f"reports/figures/samples-{d}-{m}.png": f"results/figures/samples/{d}-{m}-distill{ds}.png"
         for d, m, ds, s in distilled_sets(dd.datasets_used(config), dd.GENERATIVE_METHODS)
         if any(m in t["methods"] and d in t["datasets"] for t in config["tables"].values())
         and ds == dd.distill_seeds_for(config, m)[0] and s == config["seeds"][0]}
FIGURES = list(GRIDS)
# Figure 1: the generative methods of Table 1 (DiT vs Ours at least) on its first dataset,
# first distillation seed and seed.
_t1 = config["tables"]["table1"]
FIGURE1 = {"dataset": _t1["datasets"][0],
           "methods": [m for m in dd.METHOD_ORDER if m in _t1["methods"] and m in dd.GENERATIVE_METHODS]}
FIGURE1_FILES = ["reports/figures/figure1.png", "reports/figures/figure1.pdf"] if FIGURE1["methods"] else []


def figure1_inputs(wildcards):
    return {m: f"results/distilled/{FIGURE1['dataset']}/{m}/distill{dd.distill_seeds_for(config, m)[0]}-"
               f"seed{config['seeds'][0]}.safetensors" for m in FIGURE1["methods"]}


# Figure 4 (hyper-parameter sweeps), when params.yaml has a sweeps section.
SWEEP_FIGURES = ["reports/figures/figure4.png", "reports/figures/figure4.pdf"] if config.get("sweeps") else []
SWEEP_PLOTS_DIR = "reports/plots/sweeps"  # Figure 4's points, for DVC
SWEEP_PLOTS = [directory(SWEEP_PLOTS_DIR)] if config.get("sweeps") else []


def as_arg(obj):
    """A JSON argument (shell lines quote it with :q); as a rule param its value drives Snakemake's
    params trigger."""
    return json.dumps(obj, sort_keys=True)


def data_dir(wildcards):
    """A dataset's prepared folder (the prepare rule's outputs live in it)."""
    return f"results/data/{wildcards.dataset}"


def prepare_params(wildcards):
    return as_arg(dd.prepare_args(config, wildcards.dataset))


GEN = config["generator"]


def generator_inputs(*roles):
    """Input function: the generator folders as inputs when the workflow trains them (demo); at
    paper scale they are local folders outside the DAG, checked by onstart (missing_inputs)."""
    def inputs(wildcards):
        return {role: GEN[role] for role in roles} if GEN["pretrain"] else {}
    return inputs


def eval_params(wildcards):
    """Every resolved hyper-parameter of one evaluation job."""
    ev = config["evaluate"]
    hp = {k: v for k, v in ev.items()
          if k not in ("epochs", "epochs_full", "seeds_full", "nets", "threads", "checkpoint_every", "one_job_per")}
    hp["epochs"] = dd.epochs_for(config, wildcards.ipc)
    hp["net"] = ev["nets"][wildcards.model]
    return as_arg(hp)


def eval_seeds(wildcards) -> list[int]:
    """The evaluation seeds one evaluate job runs: every seed of its table cell, or its own."""
    return dd.seeds_for(config, wildcards.method) if EVAL_PER_CELL else [int(wildcards.seed)]


def eval_cell(wildcards):
    return as_arg({"dataset": wildcards.dataset, "method": wildcards.method, "ipc": wildcards.ipc,
                   "model": wildcards.model, "distill_seed": int(wildcards.distill_seed)})


def eval_inputs(wildcards):
    """meta.json and, except for Full, the distilled set of each seed the job runs (in seed order)."""
    inputs = {"meta": f"results/data/{wildcards.dataset}/meta.json"}
    ipc_part = f"ipc{wildcards.ipc}/" if wildcards.method in dd.SYNTHESIS_METHODS else ""
    if wildcards.method != "full":
        inputs["distilled"] = [f"results/distilled/{wildcards.dataset}/{wildcards.method}/{ipc_part}"
                               f"distill{wildcards.distill_seed}-seed{s}.safetensors" for s in eval_seeds(wildcards)]
    return inputs


def select_inputs(wildcards):
    inputs = {"meta": f"results/data/{wildcards.dataset}/meta.json"}
    if wildcards.method in dd.FEATURE_METHODS:
        inputs["features"] = f"results/features/{wildcards.dataset}"
    return inputs


def features_params(wildcards):
    # the embedding network trains with the evaluation protocol's augmentation
    return as_arg({**config["baselines"]["features"], "augment": config["evaluate"]["augment"]})


def dm_params(wildcards):
    # augment: only its normalisation is used (the space the synthetic pixels live in)
    return as_arg({**config["baselines"]["dm"], "augment": config["evaluate"]["augment"]})


def finetune_params(wildcards):
    # the method's own settings (ours-paper-code) and a sweep variant's value (ours-lambda_gen-0.032)
    finetune = {k: v for k, v in config["finetune"].items() if k != "threads"}
    return as_arg(dd.finetune_settings(finetune, wildcards.method))


def generator_dir(wildcards):
    """The DiT a generative method samples from: its fine-tuned copy (a sample-key variant such as
    ours-guidance-2 shares ours'), or the pretrained one for DiT."""
    if dd.GENERATIVE_METHODS[dd.base_method(wildcards.method)] is None:
        return GEN["dit"]
    return f"results/finetuned/{wildcards.dataset}/{dd.finetuned_name(wildcards.method)}/distill{wildcards.distill_seed}"


def sample_params(wildcards):
    # a variant's sampling values (ours-guidance-2) over the sample section
    return as_arg(dd.sample_settings({k: v for k, v in config["sample"].items() if k != "threads"}, wildcards.method))


def sample_inputs(wildcards):
    inputs = {"meta": f"results/data/{wildcards.dataset}/meta.json", **generator_inputs("vae_decoder")(wildcards)}
    if dd.GENERATIVE_METHODS[dd.base_method(wildcards.method)] is not None or GEN["pretrain"]:
        inputs["dit"] = generator_dir(wildcards)
    return inputs
