"""The project's error types.

Every failure a user can cause or meet is one of these. Each carries a one-line message that
says what is wrong and what to do, and an exit code that scripts can branch on. The tasks turn
them into ``invoke.Exit``; nothing here prints.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every expected failure. ``str(err)`` is the one-line message; ``details``: lines
    printed before it (a failing service's state and last log lines), usually none."""

    exit_code = 1

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(" ".join(message.split()))  # always one line
        self.details = details or []

    @property
    def message(self) -> str:
        return str(self.args[0])

    def extend(self, text: str) -> GatewayError:
        """Add ``text`` to the message, in place: the type, attributes and cause stay."""
        self.args = (" ".join(f"{self.message}; {text}".split()),)
        return self


class UsageError(GatewayError):
    """A flag or its value is wrong (bad duration, unknown key name, conflicting flags)."""

    exit_code = 2


class EnvFileError(GatewayError):
    """The .env file is missing, malformed, unreadable or cannot be written safely."""

    exit_code = 3


class ComposeRefusedError(EnvFileError):
    """Docker Compose is installed and refuses the compose files with this .env."""


class LockBusyError(EnvFileError):
    """Another task holds the lock on the .env file for too long."""


class ProxyUnreachableError(GatewayError):
    """LiteLLM cannot be reached: connection refused, reset, or no answer in time.

    ``maybe_done`` is True when the request may have reached LiteLLM and been carried out
    (an answer that timed out or broke off), False when it surely was not sent."""

    exit_code = 4

    def __init__(self, message: str, *, maybe_done: bool = False) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done


class AuthError(GatewayError):
    """LiteLLM refused the master key."""

    exit_code = 5


class NoDatabaseError(GatewayError):
    """LiteLLM runs without a connected database, so it cannot manage keys."""

    exit_code = 6


class ApiError(GatewayError):
    """LiteLLM (or whatever answers on its port) answered with an unexpected error."""

    exit_code = 7

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KeyStateError(GatewayError):
    """The keys are not in a state that allows the operation (e.g. no plaintext in .env)."""

    exit_code = 8


class IncompleteError(GatewayError):
    """An operation changed something and could not finish; the message says what remains."""

    exit_code = 9


class DockerUnavailableError(GatewayError):
    """No docker CLI, no daemon at its endpoint, or no Docker Compose."""

    exit_code = 10


class StackError(GatewayError):
    """A service did not come up; ``details`` holds its state and last log lines."""

    exit_code = 11


class PortInUseError(GatewayError):
    """A host port the stack publishes is held by another program."""

    exit_code = 12


class OpenWebUIError(GatewayError):
    """Open WebUI refused the admin credentials, or did not take or use the key."""

    exit_code = 13


class OpenWebUIUnreachableError(OpenWebUIError):
    """Open WebUI cannot be reached: connection refused, reset, or no answer in time."""


class BackupError(GatewayError):
    """A backup cannot be made there, or one to restore is missing a part, corrupted, or made
    by another installation (another LITELLM_SALT_KEY); nothing was changed."""

    exit_code = 14


class UpgradeFailed(StackError):
    """stack.upgrade failed and was rolled back: the old images run again (and the backed-up
    database, when the new LiteLLM had migrated it), proven; the message says what failed."""

    exit_code = 15


class Interrupted(GatewayError):
    """Ctrl-C or SIGTERM; the message says what state things were left in."""

    exit_code = 130


EXIT_CODES = {
    0: "success (including 'nothing to do')",
    1: "unexpected failure",
    2: "bad flag or value",
    3: ".env missing, malformed, unsafe or locked",
    4: "LiteLLM unreachable or too slow",
    5: "LiteLLM refused the master key",
    6: "LiteLLM has no database, so it cannot manage keys",
    7: "LiteLLM answered with an unexpected error",
    8: "keys not in a state that allows this (see the message)",
    9: "partly done: the message says what remains",
    10: "Docker or Docker Compose missing, or the daemon unreachable",
    11: "a service of the stack failed to start or become healthy",
    12: "a port the stack publishes is taken by another program",
    13: "Open WebUI unreachable, refused the admin login, or did not take or use the key",
    14: "backup refused: incomplete, corrupted, or from another installation (nothing changed)",
    15: "upgrade failed and was rolled back: the old version runs again, proven (see the message)",
    130: "interrupted (Ctrl-C / SIGTERM / SIGHUP)",
    141: "stdout was closed before the output was written (e.g. `| head`)",
}
