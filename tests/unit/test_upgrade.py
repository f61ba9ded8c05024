"""stack.upgrade's plain parts, without Docker: the image reference a version gives, the
journal an interrupted upgrade leaves, and the flags' refusals."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.base.errors import EXIT_CODES, EnvFileError, UpgradeFailed, UsageError
from tasks.gateway.upgrade import Change, Journal, retag
from tests.support.project import REPO


@pytest.mark.parametrize(("image", "version", "expected"), [
    ("ghcr.io/berriai/litellm:v1.108.7", "1.108.14", "ghcr.io/berriai/litellm:v1.108.14"),
    ("ghcr.io/berriai/litellm:v1.108.7", "v1.108.14", "ghcr.io/berriai/litellm:v1.108.14"),
    ("ghcr.io/open-webui/open-webui:v0.12.4", "0.12.5", "ghcr.io/open-webui/open-webui:v0.12.5"),
    ("registry.local:5000/litellm:1.108.7", "1.108.14", "registry.local:5000/litellm:1.108.14"),
    ("litellm@sha256:" + "a" * 64, "1.108.14", "litellm:1.108.14"),
    ("ai-gateway-test/litellm:v1.108.7", "1.108.14-never-ready",
     "ai-gateway-test/litellm:v1.108.14-never-ready"),
    ("ghcr.io/berriai/litellm:v1.108.7", "ghcr.io/berriai/litellm-database:v1.108.14",
     "ghcr.io/berriai/litellm-database:v1.108.14"),
])
def test_retag(image: str, version: str, expected: str) -> None:
    assert retag(image, version) == expected


@pytest.mark.parametrize("version", ["", "  ", "1.108 .14", "-1", ".x"])
def test_retag_refuses(version: str) -> None:
    with pytest.raises(UsageError):
        retag("ghcr.io/berriai/litellm:v1.108.7", version)


def test_journal_round_trip_is_private(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    journal = Journal([Change("litellm", "LITELLM_IMAGE", "a:v1", "a:v2", None)], "/b/x", "f",
                      ["gpt-4o-mini"], "2026-12-03T10:00:00+00:00")
    journal.write(env)
    path = Journal.file(env).path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Journal.read(env) == journal
    Journal.clear(env)
    assert Journal.read(env) is None


def test_exit_code_of_its_own() -> None:
    assert UpgradeFailed.exit_code == 15 and 15 in EXIT_CODES


def test_upgrade_needs_a_version(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "stack.upgrade"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "--litellm VERSION" in done.stderr


@pytest.mark.parametrize("body", ["{not json", "[]", '{"changes": [{"service": "litellm"}]}'])
def test_an_unreadable_journal_is_an_env_file_error_naming_it(tmp_path: Path, body: str) -> None:
    """Every journal beside .env (keys, master key, upgrade, restore) is read by one
    JournalFile: damaged is exit 3 naming the file and what to do, never "no journal"."""
    env = tmp_path / ".env"
    Journal.file(env).path.write_text(body)
    with pytest.raises(EnvFileError) as caught:
        Journal.read(env)
    assert caught.value.exit_code == 3
    assert str(Journal.file(env).path) in caught.value.message
    assert "check .env's images and delete it" in caught.value.message
