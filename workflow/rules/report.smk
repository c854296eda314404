from divdistill.report.tables import TABLE_TITLES

# Report labels of the sample grids (reports/figures/samples-<dataset>-<method>.png, FIGURES).
SAMPLE_LABELS = {f"reports/figures/samples-{d}-{m}.png": {"dataset": d, "method": m}
                 for d in dd.datasets_used(config) for m in dd.GENERATIVE_METHODS}


rule render:
    """Tables (Markdown, LaTeX, HTML), DVC metrics and accuracy curves from every evaluation; in
    MLflow one parent run per table cell in the evaluate experiment, its seed runs nested below."""
    input:
        results=[c.path for c in CELLS],
        diversity=DIVERSITY,
        grids=list(GRIDS.values()),
    output:
        # in the report (snakemake --report): the HTML tables, Figure 4's PNG and the sample grids
        tables=[report(f"reports/tables/{t}.html", caption=f"../report/{t}.rst", category="Tables",
                       labels={"table": TABLE_TITLES[t].split(" (")[0]}) if ext == "html" else f"reports/tables/{t}.{ext}"
                for t in TABLES for ext in ("md", "tex", "html")],
        diversity=report("reports/tables/diversity.md", caption="../report/diversity.rst", category="Tables",
                         labels={"table": "Diversity and coverage (Table 1's datasets)"}),
        comparisons=[report(f, caption="../report/comparisons.rst", category="Tables",
                            labels={"table": "Comparisons: paired differences with stated power"})
                     if f.endswith(".html") else f for f in COMPARISONS],
        figures=[report(f, caption="../report/samples.rst", category="Samples", labels=SAMPLE_LABELS[f]) for f in FIGURES]
        + [report(f, caption="../report/figure4.rst", category="Figures",
                  labels={"figure": "Figure 4: hyper-parameter sweeps"}) if f.endswith(".png") else f
           for f in SWEEP_FIGURES],
        metrics="reports/metrics.json",
        plots=directory("reports/plots/curves"),
        sweeps=SWEEP_PLOTS,
    params:
        spec=as_arg({k: config[k] for k in ("tables", "ipc", "seeds", "distill_seeds", "sweeps", "finetune", "evaluate")
                     if k in config}),
        grids=[f"{src}={dst}" for dst, src in GRIDS.items()],
        sweep_plots=lambda wildcards: SWEEP_PLOTS_DIR,  # Figure 4's CSVs, also without sweeps (then unused)
    conda:
        "../envs/divdistill.yaml"
    log:
        "results/logs/render.log",
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "divdistill render --spec {params.spec:q} --results {input.results:q} --diversity {input.diversity:q} "
        "--grids {params.grids:q} --tables reports/tables "
        "--metrics {output.metrics:q} --plots {output.plots:q} --sweep-plots {params.sweep_plots:q} "
        "--tracking \"$DIVDISTILL_TRACKING\" 2> {log:q}"


if STUDY_CELLS:

    rule render_study:
        """The mechanism study's tables (points, contrasts with CIs and MDDs) and figure (accuracy and
        k-NN coverage against guidance), from its evaluations and diversity measures."""
        input:
            results=[c.path for c in STUDY_CELLS],
            diversity=STUDY_DIVERSITY,
        output:
            md=f"{STUDY_DIR}/study.md",
            html=report(f"{STUDY_DIR}/study.html", caption="../report/study.rst", category="Study",
                        labels={"item": "Mechanism study: points and contrasts"}),
            metrics=f"{STUDY_DIR}/metrics.json",
            png=report(f"{STUDY_DIR}/figure.png", caption="../report/study.rst", category="Study",
                       labels={"item": "Mechanism study: accuracy and coverage against guidance"}),
            pdf=f"{STUDY_DIR}/figure.pdf",
        params:
            spec=as_arg({k: config[k] for k in ("study", "ipc", "seeds", "finetune", "sample")}),
            out=STUDY_DIR,
        conda:
            "../envs/divdistill.yaml"
        log:
            "results/logs/render_study.log",
        resources:
            mem_mb=1000,
            runtime=5,
        shell:
            "divdistill study --spec {params.spec:q} --results {input.results:q} "
            "--diversity {input.diversity:q} --out {params.out:q} 2> {log:q}"
