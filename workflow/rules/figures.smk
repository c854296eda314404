# Figure 1: the distilled sets' latents against the real ones (Table 1's first dataset).


rule figure1:
    """Real vs distilled VAE latents in the real latents' PCA plane, one panel per generative method."""
    input:
        unpack(generator_inputs("vae")),
        unpack(figure1_inputs),
        meta=META.format(dataset=FIGURE1["dataset"]),
        cache=LATENTS.format(dataset=FIGURE1["dataset"]),
    output:
        png=report(f"{grid.FIGURES}/figure1.png", caption="../report/figure1.rst", category="Figures",
                   labels={"figure": "Figure 1: real vs distilled latents (PCA)"}),
        pdf=f"{grid.FIGURES}/figure1.pdf",
        stats=f"{grid.FIGURES}/figure1.json",
    params:
        vae=GEN["vae"],
        sets=lambda wc, input: [f"{m}={input[m]}" for m in FIGURE1["methods"]],
        ipc=max(config["ipc"]),
        data=lambda wc, input: os.path.dirname(input.meta),
    threads: 1
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["figure1"],
    resources:
        mem_mb=4000,
        runtime=10,
        gpu=1,
    shell:
        "divdistill figure1 --data {params.data:q} --vae {params.vae:q} --cache {input.cache:q} "
        "--distilled {params.sets:q} --ipc {params.ipc:q} --png {output.png:q} --pdf {output.pdf:q} "
        "--stats {output.stats:q} 2> {log:q}"
