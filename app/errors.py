"""User-facing errors: raised for bad input, printed by the CLI as one clear message, exit code 2.

Anything that is the user's to fix (a missing file, a bad option, an invalid config) raises a
`UserError` saying what is wrong and what to do. The CLI prints it without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment; the message says what is wrong and what to do."""

    exit_code = 2
