# Validation, then the grid (experiment/grid.py: cells and path templates, spelled once) and the
# rules' input functions. Names come from the name table (experiment/methods.py).
import json
import os

from snakemake.utils import validate

from divdistill.evaluate import protocols
from divdistill.experiment import config as dd
from divdistill.experiment import grid, jobsets, methods, names
from divdistill.experiment.grid import (DATA, DISTILLED, DIVERSITY as DIVERSITY_PATH, EVAL as EVAL_PATH, FEATURES,
                                        FINETUNED, LATENTS, META, SAMPLE_GRID)

# nan/inf first (no schema bound rejects them), then types, ranges and unknown keys (the schema),
# then names against the name tables and relations between keys (dd.check also adds params.yaml's
# own methods to the name table).
# Schema errors come one line each, naming the file that holds the key (our own pass, before
# Snakemake's validate, which then only fills in the schema's defaults).
CONFIG_FILES = [*workflow.configfiles, *(str(f) for f in workflow.overwrite_configfiles if str(f) not in workflow.configfiles)]
try:
    dd.check_finite(config)
    if problems := dd.schema_errors(config, CONFIG_FILES, os.path.join(workflow.basedir, "workflow/schemas/params.schema.yaml")):
        raise grid.ConfigError("invalid configuration (nothing was run):\n  " + "\n  ".join(problems))
    validate(config, "../schemas/params.schema.yaml")
    dd.check(config)
except grid.ConfigError as e:
    raise SystemExit(f"error: {e}") from None

CELLS = grid.cells(config)
PROTOCOL_NAMES = list(protocols.PROTOCOLS)
# evaluate.one_job_per: "cell" runs every seed of a table cell in one process (the demo: a job's
# start-up, ~4.5 s of imports and MLflow, is paid once per cell); "seed" one job per seed (paper
# scale: seeds in parallel on a cluster).
EVAL_PER_CELL = config["evaluate"].get("one_job_per", "seed") == "cell"
TABLES = list(config["tables"])
# Jobs find the MLflow settings in their environment rather than in params;
# changing where runs are logged must not re-run the experiments.
os.environ.update(DIVDISTILL_TRACKING=json.dumps(config["mlflow"]))
# Every finished output is also copied under results/history/<output>/<MLflow run id> (io.keep):
# Snakemake deletes an output before re-running its job, and a rerun that fails must not lose it.
os.environ.update(DIVDISTILL_HISTORY=grid.HISTORY)


# The job server of this run (started by onstart when jobs run on this machine, divdistill/runtime/jobserver.py).
JOB_SERVER = {"server": None}


def stop_job_server():
    if JOB_SERVER["server"] is not None:
        JOB_SERVER["server"].stop()


# The mechanism study (config/study.yaml): its evaluations, its distilled sets' diversity, its outputs.
STUDY_CELLS = grid.study_cells(config)
STUDY_DIVERSITY = sorted({DIVERSITY_PATH.format(**vars(c)) for c in STUDY_CELLS})
STUDY_DIR = grid.STUDY
STUDY_OUTPUTS = [f"{STUDY_DIR}/{f}" for f in ("study.md", "study.html", "metrics.json", "figure.png", "figure.pdf")]

# The build cost of each table method's sets: the benchmark records of the jobs that made them
# (report/cost.py), and what the cost job reads of params.yaml.
from divdistill.report.cost import job_records as _cost_jobs

_cost = _cost_jobs(config)
COST_INPUTS = sorted({p for per_d in _cost["methods"].values() for jobs in per_d.values() for _, p, _ in jobs}
                     | {p for p, _ in _cost["shared"].values()})

# The paired comparisons of every table row (compare.py) and the robust scores (robust.py), written by
# the render job with the soft protocol's teachers' accuracies in the tables' notes.
COMPARISONS = expand(grid.COMPARISONS, ext=grid.TABLE_EXTS)
ROBUST = expand(grid.ROBUST, ext=grid.TABLE_EXTS)
TEACHERS = [grid.TEACHER_RESULT.format(dataset=d, model=m) for d, m in grid.teachers(config)]


def all_targets():
    return [*expand(grid.TABLE, table=TABLES, ext=grid.TABLE_EXTS), grid.METRICS, grid.DIVERSITY_TABLE,
            *COMPARISONS, *ROBUST, *FIGURES, *SWEEP_FIGURES, *FIGURE1_FILES, grid.COST_TABLE, grid.COST,
            *expand(grid.COST_FIGURE, ext=("png", "pdf"))]


# The job sets of the report's inputs (experiment/jobsets.py): the diversity files of Table 1's
# selected and generated sets, the sample grids copied to reports/figures, Figure 1's sets.
DIVERSITY = jobsets.diversity_paths(config)


def diversity_sets(wildcards):
    return jobsets.diversity_sets(config, wildcards.dataset, wildcards.method, wildcards.distill_seed)


GRIDS = jobsets.sample_grids(config)
FIGURES = list(GRIDS)
FIGURE1 = jobsets.figure1(config)
FIGURE1_FILES = [f"{grid.FIGURES}/figure1.png", f"{grid.FIGURES}/figure1.pdf"] if FIGURE1["methods"] else []


def figure1_inputs(wildcards):
    return jobsets.figure1_sets(config)


# Figure 4 (hyper-parameter sweeps), when params.yaml has a sweeps section.
SWEEP_FIGURES = [f"{grid.FIGURES}/figure4.png", f"{grid.FIGURES}/figure4.pdf"] if config.get("sweeps") else []
SWEEP_PLOTS_DIR = grid.SWEEP_PLOTS
SWEEP_PLOTS = [directory(SWEEP_PLOTS_DIR)] if config.get("sweeps") else []


def as_arg(obj):
    """A JSON argument (shell lines quote it with :q); as a rule param its value drives Snakemake's
    params trigger."""
    return json.dumps(obj, sort_keys=True)


def report_spec(*keys):
    """What a report job reads of params.yaml (a change elsewhere does not re-render), with params.yaml's
    own methods, eviction rules and samplers only when it has some (the built-ins' settings are not read)."""
    own = ("methods", "evictions")
    spec = {k: config[k] for k in (*keys, *own) if k in config and (k not in own or config[k])}
    samplers = {k: v for k, v in (config.get("samplers") or {}).items() if "function" in v}
    return as_arg({**spec, **({"samplers": samplers} if samplers else {})})


def data_dir(wildcards):
    """A dataset's prepared folder (the prepare rule's outputs live in it)."""
    return DATA.format(dataset=wildcards.dataset)


def prepare_inputs(wildcards):
    """A folder dataset's root (params.yaml datasets); prepare_params holds its images' digest, so an
    added, removed or replaced image re-prepares it (Snakemake's params trigger)."""
    own = config.get("datasets") or {}
    return {"folder": own[wildcards.dataset]["root"]} if wildcards.dataset in own else {}


def prepare_params(wildcards):
    return as_arg(dd.prepare_args(config, wildcards.dataset))


GEN = config["generator"]


def generator_inputs(*roles):
    """Input function: the generator folders as inputs when the workflow trains them (demo); at
    paper scale they are local folders outside the DAG, checked by onstart (missing_inputs)."""
    def inputs(wildcards):
        return {role: GEN[role] for role in roles} if GEN["pretrain"] else {}
    return inputs


def _eval_hp(model, protocol, epochs):
    """Every resolved hyper-parameter of one evaluation: its protocol's (evaluate/protocols.py) and net's."""
    ev = config["evaluate"]
    return as_arg({**protocols.resolve(ev, protocol, epochs), "net": ev["nets"][model]})


def eval_params(wildcards):
    epochs = grid.epochs_for(config, grid.parse_ipc(wildcards.ipc), wildcards.protocol)
    return _eval_hp(wildcards.model, wildcards.protocol, epochs)


def teacher_params(wildcards):
    """The teacher's: the hard protocol on the whole training set."""
    return _eval_hp(wildcards.model, protocols.HARD, grid.teacher_epochs(config))


def teacher_cell(wildcards):
    return as_arg({"dataset": wildcards.dataset, "method": "full", "ipc": grid.ipc_label(None), "model": wildcards.model,
                   "protocol": protocols.HARD, "distill_seed": 0, "role": "teacher"})


def eval_seeds(wildcards) -> list[int]:
    """The evaluation seeds one evaluate job runs: every seed of its table cell, or its own."""
    return grid.seeds_for(config, wildcards.method) if EVAL_PER_CELL else [int(wildcards.seed)]


def eval_cell(wildcards):
    # the ipc as its text ("10", "all"): so the result files and the MLflow runs hold it
    return as_arg({"dataset": wildcards.dataset, "method": wildcards.method, "ipc": wildcards.ipc,
                   "model": wildcards.model, "protocol": wildcards.protocol, "distill_seed": int(wildcards.distill_seed)})


def eval_inputs(wildcards):
    """meta.json, except for Full the distilled set of each seed the job runs (in seed order), and a soft
    protocol's teacher."""
    inputs = {"meta": META.format(dataset=wildcards.dataset)}
    if protocols.get(wildcards.protocol).labels == "soft":
        inputs["teacher"] = grid.TEACHER_NET.format(**wildcards)
    if methods.get(names.base_method(wildcards.method)).kind != "upper_bound":
        inputs["distilled"] = [grid.distilled(wildcards.dataset, wildcards.method, wildcards.distill_seed, s,
                                              grid.parse_ipc(wildcards.ipc)) for s in eval_seeds(wildcards)]
    return inputs


def select_inputs(wildcards):
    inputs = {"meta": META.format(dataset=wildcards.dataset)}
    if methods.get(wildcards.method).features:
        inputs["features"] = FEATURES.format(dataset=wildcards.dataset)
    return inputs


def features_params(wildcards):
    # the embedding network trains with the evaluation protocol's augmentation
    return as_arg({**config["baselines"]["features"], "augment": config["evaluate"]["augment"]})


def synthesis_params(wildcards):
    """A synthesis method's settings (params.yaml's synthesis.<method>) and the protocol's augment (DM
    uses only its normalisation: the space the synthetic pixels live in)."""
    return as_arg({**config["synthesis"][wildcards.method], "augment": config["evaluate"]["augment"]})


def finetune_params(wildcards):
    # the method's own settings and evictions (methods.py) and a variant's values (ours-lambda_gen-0.032)
    return as_arg(names.finetune_settings(config, wildcards.method))


def generator_dir(wildcards):
    """The DiT a generative method samples from: a fine-tuned copy (its own, or its recipe's; a sample-key
    variant such as ours-guidance-2 shares ours'), or the pretrained one (DiT, MGD³, D⁴M)."""
    tuned = names.finetuned_name(wildcards.method)
    if tuned is None:
        return GEN["dit"]
    return FINETUNED.format(dataset=wildcards.dataset, method=tuned, distill_seed=wildcards.distill_seed)


def sample_params(wildcards):
    # a variant's sampling values (ours-guidance-2) over the sample section
    return as_arg(names.sample_settings(config, wildcards.method))


def sample_inputs(wildcards):
    """meta.json, the decoder, the DiT sampled (when the workflow makes it) and, for a sampler that reads
    the real training latents (MGD³'s modes, D⁴M's prototypes), the dataset's latent cache."""
    inputs = {"meta": META.format(dataset=wildcards.dataset), **generator_inputs("vae_decoder")(wildcards)}
    method = methods.get(names.base_method(wildcards.method))
    if method.generator is not None or GEN["pretrain"]:
        inputs["dit"] = generator_dir(wildcards)
    if methods.SAMPLERS[method.sampler].needs_real:
        inputs["cache"] = LATENTS.format(dataset=wildcards.dataset)
    return inputs
