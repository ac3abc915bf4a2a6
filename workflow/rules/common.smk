# Shared helpers of the workflow: config validation at start, paths, the list of final targets.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The package is installed in the venv; this keeps a plain source checkout working too.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from servebench.config import config_errors

_problems = config_errors(config)
if _problems:
    raise WorkflowError(
        "invalid configuration (see config/schema.yaml):\n  - "
        + "\n  - ".join(_problems)
    )
# Fills in the schema's defaults for keys the config leaves out.
validate(config, "../../config/schema.yaml")

RESULTS = config["results_dir"]
CONDA_ENV = "../../envs/servebench.yaml"


def results(*parts):
    """A path under the configured results folder."""
    return str(Path(RESULTS, *parts))


def all_targets():
    """Everything `snakemake all` produces; each stage adds its final outputs here."""
    return [results("provenance", "environment.json")]
