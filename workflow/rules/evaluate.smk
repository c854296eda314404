rule evaluate:
    """Train a fresh test network on a distilled (or the full) set; final-epoch test accuracy."""
    input:
        unpack(eval_inputs),
    output:
        "results/eval/{dataset}/{method}/ipc{ipc}/{model}/distill{distill_seed}-seed{seed}.json",
    params:
        cell=eval_cell,
        hp=eval_params,
        data=data_dir,
        distilled=lambda wc, input: ["--distilled", input.distilled] if "distilled" in input.keys() else [],
        # outside the output: Snakemake deletes a failed job's output, a checkpoint must survive
        checkpoints="results/checkpoints/evaluate/{dataset}/{method}/ipc{ipc}/{model}/distill{distill_seed}-seed{seed}",
        every=config["evaluate"].get("checkpoint_every", 0),
    threads: config["evaluate"]["threads"]
    conda:
        "../envs/divdistill.yaml"
    log:
        "results/logs/evaluate/{dataset}/{method}/ipc{ipc}/{model}/distill{distill_seed}-seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{method}/ipc{ipc}/{model}/distill{distill_seed}-seed{seed}.tsv"
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=0,
    shell:
        "divdistill evaluate --data {params.data:q} "
        "{params.distilled:q} --cell {params.cell:q} --params {params.hp:q} --threads {threads} "
        "--checkpoints {params.checkpoints:q} --checkpoint-every {params.every:q} "
        "--out {output:q} 2> {log:q}"
