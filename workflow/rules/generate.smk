# The generator: (demo) pretraining of the stand-in VAE and DiT, the per-dataset
# latent cache, fine-tuning with the memories, and sampling of distilled sets.

if GEN["pretrain"]:

    rule pretrain_vae:
        """Demo stand-in for the SD VAE: a small AutoencoderKL on every demo class."""
        input:
            meta=META.format(dataset=config["pretrain"]["dataset"]),
        output:
            directory(GEN["vae"]),
        params:
            p=as_arg({k: config["pretrain"][k] for k in ("seed", "vae", "checkpoint_every") if k in config["pretrain"]}),
            data=lambda w, input: os.path.dirname(input.meta),
            checkpoints=grid.CHECKPOINTS["pretrain"],
        priority: 50  # on the critical path: start before the evaluations
        threads: config["pretrain"]["threads"]
        conda:
            "../envs/divdistill.yaml"
        log:
            grid.LOGS["pretrain_vae"],
        benchmark:
            grid.BENCHMARKS["pretrain_vae"]
        resources:
            mem_mb=4000,
            runtime=30,
        shell:
            "divdistill pretrain-vae --data {params.data:q} --params {params.p:q} "
            "--out {output:q} --checkpoints {params.checkpoints:q} --threads {threads} 2> {log:q}"

    rule pretrain_dit:
        """Demo stand-in for DiT-XL/2: a small class-conditional learned-variance DiT."""
        input:
            meta=META.format(dataset=config["pretrain"]["dataset"]),
            vae=GEN["vae"],
        output:
            directory(GEN["dit"]),
        params:
            p=as_arg({k: config["pretrain"][k] for k in ("seed", "dit", "grid", "checkpoint_every")
                      if k in config["pretrain"]}),
            data=lambda w, input: os.path.dirname(input.meta),
            checkpoints=grid.CHECKPOINTS["pretrain"],
        priority: 50  # on the critical path: start before the evaluations
        threads: config["pretrain"]["threads"]
        conda:
            "../envs/divdistill.yaml"
        log:
            grid.LOGS["pretrain_dit"],
        benchmark:
            grid.BENCHMARKS["pretrain_dit"]
        resources:
            mem_mb=4000,
            runtime=60,
        shell:
            "divdistill pretrain-dit --data {params.data:q} --vae {input.vae:q} "
            "--params {params.p:q} --out {output:q} --checkpoints {params.checkpoints:q} "
            "--threads {threads} 2> {log:q}"


rule encode:
    """VAE posterior (mean, std) of every training image and of its flip, computed once."""
    input:
        unpack(generator_inputs("vae")),
        meta=META,
    output:
        LATENTS,
    params:
        vae=GEN["vae"],
        data=data_dir,
    priority: 40  # on the critical path: start before the evaluations
    threads: config["finetune"]["threads"]
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["encode"],
    benchmark:
        grid.BENCHMARKS["encode"]
    resources:
        mem_mb=8000,
        runtime=30,
        gpu=1,
    shell:
        "divdistill encode --data {params.data:q} --vae {params.vae:q} --out {output:q} "
        "--threads {threads} 2> {log:q}"


rule finetune:
    """DiffFit fine-tuning with the representativeness/diversity memories (eq. 6)."""
    input:
        unpack(generator_inputs("vae", "dit")),
        meta=META,
        cache=LATENTS,
    output:
        directory(FINETUNED),
    wildcard_constraints:
        method=names.finetuned_method_pattern(),
    params:
        p=finetune_params,
        data=data_dir,
        vae=GEN["vae"],
        dit=GEN["dit"],
        # outside the output: Snakemake deletes a failed job's output, a checkpoint must survive
        checkpoints=grid.FINETUNE_CHECKPOINTS,
    priority: 30  # on the critical path: start before the evaluations
    threads: config["finetune"]["threads"]
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["finetune"],
    benchmark:
        grid.BENCHMARKS["finetune"]
    resources:
        mem_mb=16000,
        runtime=600,
        gpu=1,
    shell:
        "divdistill finetune --data {params.data:q} --vae {params.vae:q} --dit {params.dit:q} "
        "--method {wildcards.method:q} --distill-seed {wildcards.distill_seed:q} --params {params.p:q} "
        "--cache {input.cache:q} --checkpoints {params.checkpoints:q} --out {output:q} --threads {threads} "
        "2> {log:q}"


rule sample:
    """A generative method's distilled sets, one per evaluation seed, at the largest IPC (smaller IPCs
    are per-class prefixes). All seeds in one job: the models load once. Any sampler whose sets nest."""
    input:
        unpack(sample_inputs),
    output:
        distilled=expand(DISTILLED, seed=config["seeds"], allow_missing=True),
        grid=SAMPLE_GRID,
    wildcard_constraints:
        method=names.generative_method_pattern(),
    params:
        p=sample_params,
        ipc=max(config["ipc"]),
        data=data_dir,
        vae=GEN["vae_decoder"],
        dit=generator_dir,
        seeds=config["seeds"],
        cache=lambda wc, input: ["--cache", input.cache] if "cache" in input.keys() else [],
    priority: 20  # on the critical path: start before the evaluations
    threads: config["sample"]["threads"]
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["sample"],
    benchmark:
        grid.BENCHMARKS["sample"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    shell:
        "divdistill sample --data {params.data:q} --vae {params.vae:q} --dit {params.dit:q} "
        "--method {wildcards.method:q} --distill-seed {wildcards.distill_seed:q} --seeds {params.seeds:q} "
        "--max-ipc {params.ipc:q} {params.cache:q} --params {params.p:q} --out {output.distilled:q} "
        "--grid {output.grid:q} --threads {threads} 2> {log:q}"


use rule sample as sample_per_ipc with:
    # A sampler whose sets are one per IPC (k-means with k = IPC: MGD³'s modes, D⁴M's prototypes).
    output:
        distilled=expand(grid.DISTILLED_PER_IPC, seed=config["seeds"], allow_missing=True),
        grid=grid.SAMPLE_GRID_PER_IPC,
    wildcard_constraints:
        method=names.generative_method_pattern(per_ipc=True),
    params:
        p=sample_params,
        ipc=lambda wc: grid.parse_ipc(wc.ipc),
        data=data_dir,
        vae=GEN["vae_decoder"],
        dit=generator_dir,
        seeds=config["seeds"],
        cache=lambda wc, input: ["--cache", input.cache] if "cache" in input.keys() else [],
    log:
        grid.LOGS["sample_per_ipc"],
    benchmark:
        grid.BENCHMARKS["sample_per_ipc"]
