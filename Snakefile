# servebench: model -> runtimes -> Bentos -> load tests -> statistics -> report.
# The stages live in workflow/rules/; logic lives in src/servebench/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/bento.smk"
include: "workflow/rules/image.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/loadtest.smk"
include: "workflow/rules/resilience.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
