# The self-contained HTML report (results/report.html) and Snakemake's own report
# (`snakemake --report results/snakemake_report.html`), with the same captions
# (report/captions/*.rst). Logic: src/servebench/report/, template report/report.html.j2.
from servebench.provenance import stable_hash


report: "../../report/workflow.rst"


REPORT_DIR = Path(workflow.basedir, "report")
# The template, titles and captions are inputs: editing them re-renders the page.
REPORT_TEMPLATE_FILES = [
    str(REPORT_DIR / "report.html.j2"),
    str(REPORT_DIR / "macros.html.j2"),
    str(REPORT_DIR / "report.css"),
    str(REPORT_DIR / "items.yaml"),
] + [str(path) for path in sorted((REPORT_DIR / "captions").glob("*.rst"))]
REPORT_TARGETS = [str(LAYOUT.report_html)]
# The last target of `all`: it fails, one line per cause, when the study did not measure.
CHECK_TARGETS = [str(LAYOUT.study_ok)]


rule report_html:
    input:
        tables=list(TABLE_FILES.values()),
        figures=[path for path, *_ in FIGURE_FILES.values()],
        manifest=str(LAYOUT.figure_manifest),
        environment=str(LAYOUT.environment_json),
        model=ANALYSIS_INPUTS["model"],
        token_lengths=ANALYSIS_INPUTS["token_lengths"],
        resilience=RESILIENCE_REPORT_INPUTS,
        status=str(LAYOUT.status_json),
        # The variants as served (Bento records) and the tuning's choice.
        bentos=ANALYSIS_INPUTS["bentos"],
        tuning=ANALYSIS_INPUTS["tuning"],
        templates=REPORT_TEMPLATE_FILES,
    output:
        html=str(LAYOUT.report_html),
    log:
        results("logs", "analysis", "report.log"),
    params:
        model_name=MODEL.name,
        runtimes=MODEL_RUNTIMES,
        # The page shows the effective config: any change of it re-renders the page.
        config_hash=stable_hash(config),
        code=source_hash("report", "layout", "settings"),
    script:
        "../scripts/report_html.py"


# Tables, figures and report.html from the data on disk: `snakemake --cores 1 report`.
rule report:
    default_target: False
    input:
        ANALYSIS_TARGETS,
        REPORT_TARGETS,


rule check_study:
    """Fail `all` (and `make all`) with one line per cause when the study did not produce what
    it planned; the report, with the same causes in its banner, is there either way."""
    input:
        status=str(LAYOUT.status_json),
        report=str(LAYOUT.report_html),
    output:
        str(LAYOUT.study_ok),
    log:
        results("logs", "analysis", "check_study.log"),
    script:
        "../scripts/check_study.py"
