# Statistics and figures: results/tables/*.csv and results/figures/*.{png,pdf}.
# Logic: src/servebench/analysis/. The inputs are the outputs of the runs, the
# calibration and the model stage, never their jobs' code: changing the analysis reruns only
# the analysis and the report, and never starts a load test. With the config key
# analysis.existing_runs_only only the files already on disk are used (docs/analysis.md).
from servebench.matrix import analysis_inputs
from servebench.provenance import source_hash
from servebench.report.items import workflow_figure_outputs

ANALYSIS_INPUTS = analysis_inputs(config, MODEL.name, MODEL_RUNTIMES)
TABLE_FILES = {name: str(LAYOUT.table(name)) for name in layout.TABLE_NAMES}
CAPTION = "../../report/captions/{}.rst"
# {output name: (path, caption, category, subcategory)}; PNGs go to Snakemake's report.
FIGURE_FILES = workflow_figure_outputs(config, RESULTS)
ANALYSIS_TARGETS = list(TABLE_FILES.values()) + [
    path for path, *_ in FIGURE_FILES.values()
]


rule tables:
    """Every table: `snakemake --cores 1 tables`."""
    input:
        runs=ANALYSIS_INPUTS["runs"],
        calibration=ANALYSIS_INPUTS["calibration"],
        # The capacity table's references (runtime, in-process ceiling) and the tuning table.
        bentos=ANALYSIS_INPUTS["bentos"],
        inprocess_bench=ANALYSIS_INPUTS["inprocess_bench"],
        tuning=ANALYSIS_INPUTS["tuning"],
    output:
        **{
            name: report(path, caption=CAPTION.format(name), category="Tables")
            for name, path in TABLE_FILES.items()
        },
    log:
        results("logs", "analysis", "tables.log"),
    params:
        # Rerun when what the tables are computed from or with changes.
        analysis=config["analysis"],
        experiment=config["experiment"],
        variants=config["variants"],
        seed=config["seed"],
        # Editing the library reruns the tables (Snakemake tracks only the script's code).
        code=source_hash("analysis", "layout", "matrix", "records", "settings"),
    script:
        "../scripts/analysis_tables.py"


rule figures:
    """Every figure, as PNG and PDF: `snakemake --cores 1 figures`."""
    input:
        runs=ANALYSIS_INPUTS["runs"],
        calibration=ANALYSIS_INPUTS["calibration"],
        summary=TABLE_FILES["summary"],
        tuning=TABLE_FILES["tuning"],
        token_lengths=ANALYSIS_INPUTS["token_lengths"],
        inprocess_bench=ANALYSIS_INPUTS["inprocess_bench"],
    output:
        **{
            name: (
                report(
                    path,
                    caption=CAPTION.format(caption),
                    category=category,
                    subcategory=sub,
                )
                if caption
                else path
            )
            for name, (path, caption, category, sub) in FIGURE_FILES.items()
        },
        manifest=str(LAYOUT.figure_manifest),
    log:
        results("logs", "analysis", "figures.log"),
    params:
        model_name=MODEL.name,
        runtimes=MODEL_RUNTIMES,
        experiment=config["experiment"],
        scenarios={
            name: config["scenarios"][name]
            for name in config["experiment"]["scenarios"]
        },
        ci_level=config["analysis"]["ci_level"],
        slo_p99_ms=config["calibration"]["slo_p99_ms"],
        tuned_variant=config["tuning"]["variant"],
        code=source_hash("analysis", "layout", "matrix", "records", "settings"),
    script:
        "../scripts/analysis_figures.py"


rule study_status:
    """Did the study produce what it planned (results/status.json; the report's banner)."""
    input:
        tables=list(TABLE_FILES.values()),
        resilience=RESILIENCE_REPORT_INPUTS[:1],
    output:
        str(LAYOUT.status_json),
    log:
        results("logs", "analysis", "status.log"),
    params:
        code=source_hash("analysis", "layout", "matrix"),
    script:
        "../scripts/study_status.py"
