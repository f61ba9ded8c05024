"""The project as the tests see it: a folder with a .env, the CLI run as a user runs it, and the
LiteLLM stand-in's test-side handle. Also the constants and permission helpers every suite shares.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.standin import StandinServer

REPO = Path(__file__).resolve().parents[2]
WINDOWS = sys.platform == "win32"
#: Symlinks need a privilege on Windows (and Wine's are not faithful): those tests are POSIX only.
posix_symlinks = pytest.mark.skipif(WINDOWS, reason="symlinks need SeCreateSymbolicLinkPrivilege on "
                                    "Windows and are not faithful under Wine")


_T = TypeVar("_T")
#: ERROR_INTERNAL_ERROR: Wine's CreateProcess fails with it now and then under load, before the
#: child exists (seen in CI: 1 spawn in ~800). Nothing of ours ran, so trying again hides nothing.
_WINE_SPAWN_FLAKE = 1359


def spawn_retrying(spawn: Callable[[], _T], tries: int = 3) -> _T:
    """``spawn()``, tried again when Windows refuses to create the process with WinError 1359."""
    for attempt in range(tries):
        try:
            return spawn()
        except OSError as error:
            if getattr(error, "winerror", None) != _WINE_SPAWN_FLAKE or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def private(path: Path) -> bool:
    """Readable by its owner alone: mode exactly 0600 on POSIX, an owner-only DACL on Windows."""
    if WINDOWS:
        from tasks.envstore import perms

        return perms.is_private(path)
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def make_private(path: Path) -> None:
    """As env.init leaves a file: chmod 0600, or the owner-only DACL on Windows."""
    if WINDOWS:
        from tasks.envstore import perms

        perms.lock_down(path)
    else:
        path.chmod(0o600)


def make_public(path: Path) -> None:
    """Readable by everyone: chmod 0644, or on Windows an ACE granting Everyone read access."""
    if not WINDOWS:
        path.chmod(0o644)
        return
    import ntsecuritycon
    import win32security

    descriptor = win32security.GetFileSecurity(str(path), win32security.DACL_SECURITY_INFORMATION)
    dacl = descriptor.GetSecurityDescriptorDacl()
    everyone = win32security.CreateWellKnownSid(win32security.WinWorldSid)
    dacl.AddAccessAllowedAce(win32security.ACL_REVISION, ntsecuritycon.FILE_GENERIC_READ, everyone)
    descriptor.SetSecurityDescriptorDacl(True, dacl, False)
    win32security.SetFileSecurity(str(path), win32security.DACL_SECURITY_INFORMATION, descriptor)


MASTER = "sk-test-master-" + "m" * 24
MODELS = ["gpt-4o-mini", "claude-haiku", "llama-3"]


def key_accepted(base_url: str, key: str) -> bool:
    """Does LiteLLM (or its stand-in) at ``base_url`` accept ``key`` on /v1/models?"""
    request = urllib.request.Request(f"{base_url}/v1/models",
                                     headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False


@dataclass
class Standin:
    """Test-side handle on the stand-in: its URL, its state and its fault switches."""

    server: StandinServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> Any:
        return self.server.state

    def fault(self, path: str, **spec: Any) -> None:
        with self.state.lock:
            self.state.faults.append({"path": path, **spec})

    def keys(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.state.lock:
            return [
                {**r, "status": self.state.status(r)}
                for t, r in self.state.keys.items()
                if include_deleted or t not in self.state.deleted
            ]

    def active(self, alias: str | None = None) -> list[dict[str, Any]]:
        return [k for k in self.keys() if k["status"] == "active"
                and (alias is None or k["key_alias"] == alias)]

    def accepts(self, key: str) -> bool:
        return key_accepted(self.url, key)

    def release(self) -> None:
        """Let the requests a ``held`` fault keeps waiting go on: LiteLLM carries them out."""
        self.state.release()

    def pending(self) -> list[dict[str, Any]]:
        """The keys (not deleted) still under a ``[pending ...]`` alias."""
        return [k for k in self.keys() if "[pending " in str(k["key_alias"])]

    def wait_for_pending(self, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait until a ``[pending ...]`` key exists (a held or late request carried out)."""
        deadline = time.monotonic() + timeout
        while not self.pending():
            assert time.monotonic() < deadline, "no [pending ...] key appeared"
            time.sleep(0.02)
        return self.pending()

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.state.lock:
            return [r for r in self.state.log if path is None or r["path"] == path]

    def worked(self, path: str) -> int:
        """How many requests to ``path`` the stand-in has done the work of (answered or not)."""
        with self.state.lock:
            return self.state.worked.count(path)

    def wait_worked(self, path: str, seen: int, timeout: float = 60) -> None:
        """Wait until the work of a request to ``path`` beyond the first ``seen`` is done."""
        deadline = time.monotonic() + timeout
        while self.worked(path) <= seen:
            assert time.monotonic() < deadline, f"the stand-in never did the work of {path}"
            time.sleep(0.01)


#: Every request the project sent to the stand-in during this run, for the contract check
#: against the real proxy's OpenAPI document (tests/real/test_peer_litellm.py, run last).
CLIENT_REQUESTS: list[dict[str, Any]] = []


def write_env(path: Path, **values: str) -> Path:
    """A valid .env like env.init writes, with the stand-in's master key."""
    base = {
        "COMPOSE_PROJECT_NAME": "ai-gateway-test",
        "LITELLM_MASTER_KEY": MASTER,
        "LITELLM_PORT": "4000",
        "UI_USERNAME": "admin",
        "UI_PASSWORD": "ui-password-123",
        "POSTGRES_USER": "litellm",
        "POSTGRES_PASSWORD": "pg-password-12345",
        "POSTGRES_DB": "litellm",
        "WEBUI_PORT": "3000",
        "WEBUI_SECRET_KEY": "webui-secret-key-123456",
        "LITELLM_SALT_KEY": "salt-key-1234567890abcdef",
        "WEBUI_ADMIN_EMAIL": "admin@example.com",
        "WEBUI_ADMIN_PASSWORD": "admin-password-123",
        "FIRST_RUN": "yes",
        "VIRTUAL_KEY": "",
    }
    base.update(values)
    path.write_text("".join(f"{k}={v}\n" for k, v in base.items()))
    make_private(path)
    return path


@dataclass
class Project:
    dir: Path
    env: Path
    url: str

    def read(self) -> str:
        return self.env.read_text()

    def value(self, name: str) -> str:
        from tasks.envstore import envfile

        return envfile.load(self.env).get(name)

    def environ(self, **extra: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith(("INVOKE_", "LITELLM_"))}
        environ.update({"INVOKE_GATEWAY_ENV_FILE": str(self.env), "LITELLM_PROXY_URL": self.url,
                        "PYTHONDONTWRITEBYTECODE": "1"})
        environ.update(extra)
        return environ

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 60, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
        """``invoke <args>`` as a user would run it: a real process, stdin not a terminal.
        ``pass_fds``: descriptors the process inherits (POSIX), as a shell's ``<(...)`` gives."""
        return spawn_retrying(lambda: subprocess.run(
            [sys.executable, "-m", "invoke", "-r", str(REPO), *args],
            cwd=self.dir, env=self.environ(**(env or {})), text=True, capture_output=True,
            timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL,
            pass_fds=pass_fds,
        ))

    def start(self, *args: str) -> subprocess.Popen[str]:
        """``invoke <args>`` in the background (to kill or interrupt it)."""
        return spawn_retrying(lambda: subprocess.Popen(
            [sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=self.dir,
            env=self.environ(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ))

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def start_rotation(project: Project, litellm: Standin, path: str, mode: str) -> subprocess.Popen[str]:
    """``keys.rotate`` in the background, held at ``path`` by a fault of ``mode`` (the caller
    kills or interrupts it there)."""
    # the first /v1/models asks what LiteLLM serves (master key); the second is the proof
    skip = 1 if path == "/v1/models" else 0
    seen, worked = len(litellm.requests(path)) + skip, litellm.worked(path) + skip
    # a held request waits for the test to release it (then is carried out), the others 20 s
    litellm.fault(path, mode=mode, delay=120 if mode == "held" else 20, skip=skip)
    proc = project.start("keys.rotate")
    deadline = time.monotonic() + 60
    while len(litellm.requests(path)) <= seen:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the rotation never reached the step"
        time.sleep(0.02)
    if mode == "hang_after":
        litellm.wait_worked(path, worked)  # the work it will never answer is done
    return proc


def outlive_litellm(project: Project) -> None:
    """Move every keys-journal entry's ``started_at`` back past LiteLLM's request timeout, as if
    that much time had gone by since the killed run sent its ``/key/generate``."""
    from datetime import datetime, timedelta, timezone

    from tasks.virtualkeys.rotation import GENERATE_MAY_RUN

    path = project.dir / ".env.keys-journal.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    past = datetime.now(timezone.utc) - GENERATE_MAY_RUN - timedelta(seconds=1)
    for entry in data.values():
        entry["started_at"] = past.isoformat()
    path.write_text(json.dumps(data), encoding="utf-8")  # the file keeps its mode / DACL


def two_key_config(project: Project) -> str:
    """An ``invoke -f`` file beside the project that adds a second consumer, ``continue-dev``
    (``CONTINUE_DEV_KEY``, its own team, restricted to ``claude-haiku``); returns its path."""
    config = project.dir / "invoke.json"
    config.write_text(json.dumps({"gateway": {"keys": {"continue-dev": {
        "env_var": "CONTINUE_DEV_KEY", "alias": "Continue.dev Key", "team_id": "continue-dev-team",
        "team_alias": "Continue.dev Team", "models": ["claude-haiku"]}}}}))
    return str(config)

