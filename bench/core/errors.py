"""Every exception the command line turns into an exit code: bad input (2) or a refusing machine (1), in one line.

One hierarchy, so the CLI catches ``UsageError`` once instead of each command
mapping its own exception classes (which is what made the CLI and its command
modules import each other). Lower layers raise the specific class; nothing here
imports anything, so every layer may depend on it.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: printed as one line, exit code 2."""


class ConfigError(UsageError):
    """Bad user input in a run file or on the command line."""


class RunError(UsageError):
    """A run folder that cannot be read as asked: one line naming the problem."""


class CatalogError(UsageError):
    """A device catalogue file that cannot be used; the message names file and field."""


class UnknownDeviceError(UsageError):
    """A device name that is in no catalogue; the message lists close matches."""


class PipelineError(UsageError):
    """A pipeline that cannot be built: unknown pass, bad argument, impossible order."""


class NotApplicable(PipelineError):
    """A pass that finds, once it sees the model, nothing to work on (2:4 sparsity on a model
    without Linear layers, int8-dynamic on a graph without MatMul): the cell is `skipped`
    with this reason, as for a pass that does not apply to the device, not an `error`."""


class EnvironmentProblem(Exception):
    """The machine refused, not the user's input: disk full, a folder that cannot be written, a busy
    machine where a clean one is required. Printed as one line naming the path or the reading, exit 1;
    rows finished before it stay on disk."""


#: exit codes of `python -m bench`: 1 is "a comparison found a regression" or "the machine refused"
EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_ENVIRONMENT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
