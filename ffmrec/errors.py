"""User-facing errors.

Every error a user can fix (a malformed file, a missing dataset, an impossible config) is raised as a subclass of
:class:`FFMRecError` with a message that names the input, the problem and the fix. The CLI prints such an error on one
line, without a traceback, and exits with status 2.
"""

from __future__ import annotations


class FFMRecError(Exception):
    """An error the user can fix; the message names the input, the problem and the fix."""

    exit_code = 2


class DataError(FFMRecError):
    """A data file is missing, malformed or inconsistent."""


class ConfigError(FFMRecError):
    """A config key, value, recipe or combination of settings is invalid."""
