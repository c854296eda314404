rule render:
    """Tables (Markdown + LaTeX), DVC metrics and accuracy curves from every evaluation."""
    input:
        results=[c.path for c in CELLS],
        diversity=DIVERSITY,
        grids=list(GRIDS.values()),
    output:
        tables=expand("reports/tables/{table}.{ext}", table=TABLES, ext=["md", "tex"]),
        diversity="reports/tables/diversity.md",
        figures=FIGURES + SWEEP_FIGURES,
        metrics="reports/metrics.json",
        plots=directory("reports/plots/curves"),
    params:
        spec=as_arg({k: config[k] for k in ("tables", "ipc", "seeds", "distill_seeds", "sweeps", "finetune")
                     if k in config}),
        grids=" ".join(f"{src}={dst}" for dst, src in GRIDS.items()),
    conda:
        "../envs/divdistill.yaml"
    log:
        "results/logs/render.log",
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "divdistill render --spec {params.spec} --results {input.results} --diversity {input.diversity} "
        "--grids {params.grids} --tables reports/tables "
        "--metrics {output.metrics} --plots {output.plots} 2> {log}"
