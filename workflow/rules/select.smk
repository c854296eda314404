rule features:
    """The K-Center / Herding embedding network: one ConvNet trained on the dataset's full training set."""
    input:
        meta=META,
    output:
        directory(FEATURES),
    params:
        p=features_params,
        data=data_dir,
    threads: config["baselines"]["threads"]
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["features"],
    benchmark:
        grid.BENCHMARKS["features"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    shell:
        "divdistill features --data {params.data:q} --params {params.p:q} --out {output:q} "
        "--threads {threads} 2> {log:q}"


rule select:
    """A selection method's ordered per-class picks at the largest IPC (smaller IPCs are prefixes), by
    its function (the selection contract), every seed in one job (the features are embedded once)."""
    input:
        unpack(select_inputs),
    output:
        # selections fine-tune nothing: their distillation seed is always 0
        expand(DISTILLED, distill_seed=0, seed=config["seeds"], allow_missing=True),
    wildcard_constraints:
        method="|".join(methods.names("selection")),
    params:
        max_ipc=max(config["ipc"]),
        data=data_dir,
        seeds=config["seeds"],
        function=lambda wc: methods.get(wc.method).function,
        features=lambda wc, input: ["--features", input.features] if "features" in input.keys() else [],
    threads: config["baselines"]["threads"]
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["select"],
    benchmark:
        grid.BENCHMARKS["select"]
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "divdistill select --method {wildcards.method:q} --function {params.function:q} "
        "--data {params.data:q} --seeds {params.seeds:q} --max-ipc {params.max_ipc:q} "
        "{params.features:q} --threads {threads} --out {output:q} 2> {log:q}"


rule synthesize:
    """A synthesis method's set optimised for one (IPC, seed) by its function (the synthesis contract;
    DM's: baselines/dm.py). Sets of different IPCs are not nested."""
    input:
        meta=META,
    output:
        expand(grid.DISTILLED_PER_IPC, distill_seed=0, allow_missing=True),
    wildcard_constraints:
        method="|".join(methods.names("synthesis")) or "(?!)",
    params:
        p=synthesis_params,
        function=lambda wc: methods.get(wc.method).function,
        data=data_dir,
    threads: config["baselines"]["threads"]
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["synthesize"],
    benchmark:
        grid.BENCHMARKS["synthesize"]
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=1,
    shell:
        "divdistill synthesize --method {wildcards.method:q} --function {params.function:q} "
        "--data {params.data:q} --ipc {wildcards.ipc:q} --seed {wildcards.seed:q} "
        "--params {params.p:q} --out {output:q} --threads {threads} 2> {log:q}"


rule diversity:
    """Within-class similarity and coverage (VAE latents), and precision / recall / density / coverage
    (the feature ConvNet's embedding) of a method's distilled sets (every seed) at every IPC."""
    input:
        unpack(generator_inputs("vae")),
        meta=META,
        features=FEATURES,
        distilled=diversity_sets,
        cache=LATENTS,
    output:
        expand(DIVERSITY_PATH, seed=config["seeds"], allow_missing=True),
    params:
        data=data_dir,
        vae=GEN["vae"],
        ipc=config["ipc"],
        per_ipc=lambda wc: ["--per-ipc"] if methods.get(names.base_method(wc.method)).per_ipc else [],
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["diversity"],
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "divdistill diversity --data {params.data:q} --vae {params.vae:q} --cache {input.cache:q} "
        "--features {input.features:q} --distilled {input.distilled:q} --ipc {params.ipc:q} {params.per_ipc:q} "
        "--out {output:q} 2> {log:q}"
