# Evaluation: a fresh test network trained on a distilled (or the full) set per seed; final-epoch
# test accuracy. One job per table cell (every seed: evaluate.one_job_per: cell) or per seed.

if EVAL_PER_CELL:  # Full (ipc "all") may run on fewer seeds: evaluate.seeds_full
    EVAL_OUTPUT, EVAL_JOB = expand(EVAL_PATH, seed=config["seeds"], allow_missing=True), "evaluate"
    EVAL_OUTPUT_FULL = expand(EVAL_PATH, seed=grid.seeds_for(config, "full"), allow_missing=True)
else:
    EVAL_OUTPUT, EVAL_JOB, EVAL_OUTPUT_FULL = EVAL_PATH, "evaluate_seed", EVAL_PATH


rule evaluate:
    """Train a fresh test network on a distilled set per seed; final-epoch test accuracy."""
    wildcard_constraints:
        ipc=r"\d+",
    input:
        unpack(eval_inputs),
    output:
        EVAL_OUTPUT,
    params:
        cell=eval_cell,
        hp=eval_params,
        data=data_dir,
        seeds=eval_seeds,
        distilled=lambda wc, input: ["--distilled", *input.distilled] if "distilled" in input.keys() else [],
        teacher=lambda wc, input: ["--teacher", input.teacher] if "teacher" in input.keys() else [],
        # outside the output: Snakemake deletes a failed job's output, a checkpoint must survive
        checkpoints=grid.CHECKPOINTS["evaluate"],
        every=config["evaluate"].get("checkpoint_every", 0),
    threads: config["evaluate"]["threads"]
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS[EVAL_JOB],
    benchmark:
        grid.BENCHMARKS[EVAL_JOB]
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=0,
    shell:
        "divdistill evaluate --data {params.data:q} "
        "{params.distilled:q} {params.teacher:q} --cell {params.cell:q} --seeds {params.seeds:q} --params {params.hp:q} "
        "--threads {threads} --checkpoints {params.checkpoints:q} --checkpoint-every {params.every:q} "
        "--out {output:q} 2> {log:q}"


use rule evaluate as evaluate_full with:
    wildcard_constraints:
        ipc=grid.ipc_label(None),
        protocol=protocols.HARD,
    output:
        EVAL_OUTPUT_FULL,


rule teacher:
    """The soft protocol's teacher of a (dataset, test network): the hard protocol on the whole training
    set, trained once for every method and seed that reads it; its network and its run's result."""
    input:
        meta=META,
    output:
        net=grid.TEACHER_NET,
        result=grid.TEACHER_RESULT,
    params:
        cell=teacher_cell,
        hp=teacher_params,
        data=data_dir,
        seed=config["evaluate"].get("teacher", {}).get("seed", 0),
        checkpoints=grid.CHECKPOINTS["teacher"],
        every=config["evaluate"].get("checkpoint_every", 0),
    threads: config["evaluate"]["threads"]
    priority: 50  # the soft evaluations wait on it
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["teacher"],
    benchmark:
        grid.BENCHMARKS["teacher"]
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=0,
    shell:
        "divdistill evaluate --data {params.data:q} --cell {params.cell:q} --seeds {params.seed:q} "
        "--params {params.hp:q} --threads {threads} --checkpoints {params.checkpoints:q} "
        "--checkpoint-every {params.every:q} --save-net {output.net:q} --out {output.result:q} 2> {log:q}"
