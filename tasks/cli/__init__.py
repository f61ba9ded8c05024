"""What every task shares, and the only place (with the collections) that knows about Invoke
or prints: ``failures`` (how a task ends: exit codes, signals, configuration errors), ``inputs``
(flags, stdin, prompts, settings), ``output`` (stdout, stderr, progress)."""

from __future__ import annotations

from .failures import guarded, install_config_error_hook
from .inputs import (
    confirm,
    count_flag,
    exactly_one,
    plain,
    read_stdin_line,
    seconds_flag,
    settings_from,
)
from .output import emit, emit_json, is_terminal, note, progress, service_change

__all__ = [
    "confirm", "count_flag", "emit", "emit_json", "exactly_one", "guarded",
    "install_config_error_hook", "is_terminal", "note", "plain", "progress", "read_stdin_line",
    "seconds_flag", "service_change", "settings_from",
]
