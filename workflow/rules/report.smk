from divdistill.report.tables import TABLE_TITLES

# Report labels of the sample grids (reports/figures/samples-<dataset>-<method>.png, FIGURES).
SAMPLE_LABELS = {f"{grid.FIGURES}/samples-{d}-{m}.png": {"dataset": d, "method": m}
                 for d in grid.datasets_used(config) for m in methods.names("generative")}

REPORT_SPEC = report_spec("tables", "ipc", "seeds", "distill_seeds", "sweeps", "finetune", "evaluate", "datasets")
COST_SPEC = report_spec("tables", "ipc", "seeds", "distill_seeds", "baselines", "finetune", "sample", "pretrain",
                        "generator")


rule parents:
    """MLflow: one parent run per table cell in the evaluate experiment, its seed runs nested below
    (tracking/parents.py); their ids go to a file the HTML tables link from."""
    input:
        results=[c.path for c in CELLS],
    output:
        grid.PARENTS,
    params:
        spec=REPORT_SPEC,
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["parents"],
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "divdistill parents --spec {params.spec:q} --results {input.results:q} --out {output:q} "
        "--tracking \"$DIVDISTILL_TRACKING\" 2> {log:q}"


rule render:
    """Tables (Markdown, LaTeX, HTML), DVC metrics and accuracy curves from every evaluation (no MLflow
    writes: the HTML tables link to the parents job's runs)."""
    input:
        results=[c.path for c in CELLS],
        diversity=DIVERSITY,
        grids=list(GRIDS.values()),
        parents=grid.PARENTS,
        teachers=TEACHERS,
    output:
        # in the report (snakemake --report): the HTML tables, Figure 4's PNG and the sample grids
        tables=[report(grid.TABLE.format(table=t, ext=ext), caption=f"../report/{t}.rst", category="Tables",
                       labels={"table": TABLE_TITLES[t].split(" (")[0]}) if ext == "html"
                else grid.TABLE.format(table=t, ext=ext) for t in TABLES for ext in grid.TABLE_EXTS],
        diversity=report(grid.DIVERSITY_TABLE, caption="../report/diversity.rst", category="Tables",
                         labels={"table": "Diversity and coverage (Table 1's datasets)"}),
        comparisons=[report(f, caption="../report/comparisons.rst", category="Tables",
                            labels={"table": "Comparisons: paired differences with stated power"})
                     if f.endswith(".html") else f for f in COMPARISONS],
        robust=[report(f, caption="../report/robust.rst", category="Tables",
                       labels={"table": "Robust scores: LRS and ARS"}) if f.endswith(".html") else f for f in ROBUST],
        figures=[report(f, caption="../report/samples.rst", category="Samples", labels=SAMPLE_LABELS[f]) for f in FIGURES]
        + [report(f, caption="../report/figure4.rst", category="Figures",
                  labels={"figure": "Figure 4: hyper-parameter sweeps"}) if f.endswith(".png") else f
           for f in SWEEP_FIGURES],
        metrics=grid.METRICS,
        evidence=grid.EVIDENCE,
        plots=directory(grid.CURVES),
        sweeps=SWEEP_PLOTS,
    params:
        spec=REPORT_SPEC,
        grids=[f"{src}={dst}" for dst, src in GRIDS.items()],
        tables=lambda wildcards, output: os.path.dirname(output.diversity),  # the tables folder
        sweep_plots=lambda wildcards: SWEEP_PLOTS_DIR,  # Figure 4's CSVs, also without sweeps (then unused)
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["render"],
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "divdistill render --spec {params.spec:q} --results {input.results:q} --diversity {input.diversity:q} "
        "--grids {params.grids:q} --tables {params.tables:q} --parents {input.parents:q} --teachers {input.teachers:q} "
        "--metrics {output.metrics:q} --evidence {output.evidence:q} --plots {output.plots:q} --sweep-plots {params.sweep_plots:q} 2> {log:q}"


rule cost:
    """What each method's sets cost to build (core-seconds from the jobs' benchmark records; report/cost.py):
    a table, its JSON and accuracy against cost, apart from the accuracy tables (timings vary)."""
    input:
        benchmarks=COST_INPUTS,
        metrics=grid.METRICS,
    output:
        table=grid.COST_TABLE,
        json=grid.COST,
        png=report(grid.COST_FIGURE.format(ext="png"), caption="../report/cost.rst", category="Figures",
                   labels={"figure": "Build cost against accuracy"}),
        pdf=grid.COST_FIGURE.format(ext="pdf"),
    params:
        spec=COST_SPEC,
    conda:
        "../envs/divdistill.yaml"
    log:
        grid.LOGS["cost"],
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "divdistill cost --spec {params.spec:q} --metrics {input.metrics:q} --table {output.table:q} "
        "--json {output.json:q} --png {output.png:q} --pdf {output.pdf:q} 2> {log:q}"


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
            spec=report_spec("study", "ipc", "seeds", "finetune", "sample"),
            out=STUDY_DIR,
        conda:
            "../envs/divdistill.yaml"
        log:
            grid.LOGS["render_study"],
        resources:
            mem_mb=1000,
            runtime=5,
        shell:
            "divdistill study --spec {params.spec:q} --results {input.results:q} "
            "--diversity {input.diversity:q} --out {params.out:q} 2> {log:q}"
