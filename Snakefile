# divdistill: diversity-driven generative dataset distillation, end to end.
#   snakemake --cores 8 all                     # the demo (params.yaml)
#   snakemake --cores 8 all --configfile config/smoke.yaml
#   snakemake --cores 8 --configfile config/study.yaml -- study   # the mechanism study
from snakemake.utils import min_version

min_version("9.0")


# params.yaml read once by us first: a syntax error is one line, params.yaml:LINE:COLUMN (Snakemake's
# own message names neither). An overlay given with --configfile is read by Snakemake before this file
# runs: `divdistill check --config FILE` names the line there (make study runs it first).
from divdistill.experiment import config as dd

if os.path.exists("params.yaml"):
    try:
        dd.load("params.yaml")
    except dd.ConfigError as e:
        raise SystemExit(f"error: {e}") from None


configfile: "params.yaml"


# snakemake --report reports/report.html: one self-contained page, captions in workflow/report/
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="[a-z0-9-]+",
    method="[a-z0-9_.+-]+",  # sweep variants: ours-lambda_gen-0.032
    ipc=rf"\d+|{grid.ipc_label(None)}",  # None: Full
    model="[a-z0-9]+",
    seed=r"\d+",
    distill_seed=r"\d+",
    protocol="|".join(PROTOCOL_NAMES),


include: "workflow/rules/data.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        all_targets(),
    default_target: True


# The mechanism study: snakemake --cores 2 --configfile config/study.yaml -- study (make study)
rule study:
    input:
        STUDY_OUTPUTS if STUDY_CELLS else [],


onstart:
    # Every missing dataset or weight folder in one error, before any job (dry runs skip this).
    problems = dd.missing_inputs(config)
    if problems:
        raise FileNotFoundError("missing inputs (nothing was run):\n  " + "\n  ".join(problems))
    # Local jobs on a machine without a GPU run as forks of one job server that imported torch,
    # diffusers and MLflow once (~5 s a job otherwise; src/divdistill/runtime/jobserver.py). Started first:
    # its imports overlap the tracking store's set-up below (~3 s for a new mlflow.db).
    # DIVDISTILL_NO_JOB_SERVER=1: a process per job. Local jobs may also take the cores this run
    # leaves idle, where that gives the same bits (src/divdistill/runtime/threads.py).
    if workflow.local_exec:
        from divdistill.runtime import jobserver, threads

        os.environ[threads.ENV] = str(workflow.cores)
        JOB_SERVER["server"] = jobserver.start(grid.JOB_SERVER_LOG)
    # Check mlflow.db (never a new history over an old one), create it and every experiment once,
    # before jobs race to do it.
    from divdistill.tracking.store import TrackingError, close_stale_runs, init_tracking

    try:
        init_tracking(config["mlflow"])
    except TrackingError as e:
        stop_job_server()
        raise SystemExit(f"error: {e}") from None
    closed, left = close_stale_runs(config["mlflow"])  # jobs killed outright never ended their runs
    if closed:
        print(f"marked {closed} MLflow run(s) left RUNNING by killed jobs as KILLED")
    if left:
        print(f"{left} MLflow run(s) RUNNING on other hosts left as they are")


onsuccess:
    stop_job_server()


onerror:
    stop_job_server()
