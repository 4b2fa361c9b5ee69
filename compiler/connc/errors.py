"""The exceptions that stop a run, and the exit codes they map to.

Findings (problems in the user's files) are values, not exceptions: see `findings`.
Exceptions are for what stops a command. Their messages are shown to the user as they are,
so they must never contain a secret value; the constructors take no secret, and redact what
looks like one (`secrets.redact`: a refusal may quote what a file says).
"""

from __future__ import annotations

import enum

from connc.secrets import redact


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1  # validate found errors; render/diff refused
    USAGE = 2  # bad options, no repository, no sops binary, unreadable environment
    INTERNAL = 3  # a bug in connc
    INTERRUPTED = 130


class ConncError(Exception):
    """A failure the user can act on; printed as one line, no traceback."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, path: str | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.path = path if path is None else redact(path)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class UsageError(ConncError):
    exit_code = ExitCode.USAGE


class Refused(ConncError):
    """The input is understood and refused (a value `secret set` will not write, ...): exit 1."""

    exit_code = ExitCode.FINDINGS


class SopsError(ConncError):
    """sops failed; the message is ours, never sops' own stderr (it can hold plaintext).

    `no_key`: none of the file's recipients has a key here (not a fault of the file).
    """

    exit_code = ExitCode.FINDINGS

    def __init__(self, message: str, *, path: str | None = None, no_key: bool = False) -> None:
        super().__init__(message, path=path)
        self.no_key = no_key
        if no_key:  # no usable key is the environment's fault, not the file's: exit 2
            self.exit_code = ExitCode.USAGE


class RenderError(ConncError):
    exit_code = ExitCode.FINDINGS


class GitHubError(ConncError):
    exit_code = ExitCode.FINDINGS
