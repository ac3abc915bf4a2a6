"""The errors a user sees as one line (no traceback): bad input, bad configuration.

`servebench` prints a UserError as `servebench COMMAND: error: MESSAGE` and exits with 2; the
workflow turns a ConfigError into a WorkflowError that lists every problem.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input: printed as one line, without a traceback."""


class ConfigError(UserError, ValueError):
    """The configuration does not follow config/schema.yaml or a rule across its keys."""
