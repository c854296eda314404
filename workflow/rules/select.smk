rule select:
    """A selection baseline's ordered per-class picks at the largest IPC (smaller IPCs are prefixes)."""
    input:
        meta="results/data/{dataset}/meta.json",
    output:
        "results/distilled/{dataset}/{method}/seed{seed}.safetensors",
    wildcard_constraints:
        method="|".join(dd.SELECTION_METHODS),
    params:
        max_ipc=max(config["ipc"]),
    conda:
        "../envs/divdistill.yaml"
    log:
        "results/logs/select/{dataset}/{method}/seed{seed}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "divdistill select --method {wildcards.method} "
        "--data results/data/{wildcards.dataset} --seed {wildcards.seed} --max-ipc {params.max_ipc} "
        "--out {output} 2> {log}"
