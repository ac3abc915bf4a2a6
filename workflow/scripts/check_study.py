"""Rule check_study: fail, one line per cause, when the study did not produce what it planned."""

import json
import sys
from pathlib import Path

sm = snakemake  # noqa: F821
status = json.loads(Path(sm.input.status).read_text(encoding="utf-8"))
if status["problems"]:
    lines = [f"servebench: the study did not produce what it planned (see {sm.input.report}):"]
    lines += [f"  - {problem}" for problem in status["problems"]]
    Path(sm.log[0]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines), file=sys.stderr)
    sys.exit(1)
Path(sm.output[0]).write_text(
    f"{status['valid_runs']} of {status['runs']} runs valid\n", encoding="utf-8"
)
