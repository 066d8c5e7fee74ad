"""Every error type defectlib raises, in one leaf module (it imports nothing from the package).

Introduced in chapter 03 (baseline).  Each is a ``ValueError``, so callers
that only want to report bad input catch one type; the command line turns
each into a one-line message naming the file and the problem (exit status 2).
"""
from __future__ import annotations

from collections.abc import Sequence


class ConfigError(ValueError):
    """A config that does not fit the schema; the message names the file and the key."""


class DatasetError(ValueError):
    """A dataset folder or file that is not what the loader expects.

    The message lists every offending file and what was wrong with it;
    ``problems`` holds them one by one.
    """

    def __init__(self, problems: Sequence[str], header: str = "Invalid dataset"):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{header}: {len(self.problems)} problem(s)\n{shown}{more}")


class CheckpointError(ValueError):
    """A file that is not a checkpoint written by defectlib."""


class OnnxModelError(CheckpointError):
    """A file that is not an ONNX model exported by defectlib."""


class OutputError(ValueError):
    """An output folder that predict refuses to write into."""


#: The error types the command line reports in one line (exit status 2).
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DatasetError, CheckpointError, OutputError)
