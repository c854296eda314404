rule render:
    """Tables (Markdown + LaTeX), DVC metrics and accuracy curves from every evaluation."""
    input:
        [c.path for c in CELLS],
    output:
        tables=expand("reports/tables/{table}.{ext}", table=TABLES, ext=["md", "tex"]),
        metrics="reports/metrics.json",
        plots=directory("reports/plots/curves"),
    params:
        spec=as_arg({k: config[k] for k in ("tables", "ipc", "seeds")}),
    conda:
        "../envs/divdistill.yaml"
    log:
        "results/logs/render.log",
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "divdistill render --spec {params.spec} --results {input} --tables reports/tables "
        "--metrics {output.metrics} --plots {output.plots} 2> {log}"
