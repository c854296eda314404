rule prepare:
    """Fashion-MNIST's IDX files, an ImageNet subset or a folder of class subfolders (params.yaml's
    datasets, a declared input) -> the suite's dataset format."""
    input:
        unpack(prepare_inputs),
    output:
        meta=META,
        train=f"{DATA}/train.safetensors",
        test=f"{DATA}/test.safetensors",
    params:
        data=prepare_params,
        out=data_dir,
    conda:
        "../envs/divdistill.yaml"
    priority: 60  # seconds each; the pretraining chain waits on them
    log:
        grid.LOGS["prepare"],
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "divdistill prepare --dataset {wildcards.dataset:q} "
        "--params {params.data:q} --out {params.out:q} 2> {log:q}"
