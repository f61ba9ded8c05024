"""Shared fixtures: the LiteLLM stand-in on 127.0.0.1, a project folder with a .env, the CLI.

The helpers themselves live in tests/support/; this file holds only fixtures and pytest hooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers' asserts explain themselves as a test's do (as when they lived in this file).
pytest.register_assert_rewrite("tests.support")

from tests.support.project import (  # noqa: E402
    CLIENT_REQUESTS,
    MASTER,
    MODELS,
    WINDOWS,
    Project,
    Standin,
    write_env,
)
from tests.support.standin import StandinServer, serve_in_thread  # noqa: E402

#: tests/windows/ holds tests that only mean something on Windows; tests/test_windows.py runs
#: them (with the other non-Docker suites) under a Windows CPython. Elsewhere: not collected.
collect_ignore_glob = [] if WINDOWS else ["windows/*"]


@pytest.fixture(scope="session")
def _standin_server() -> Iterator[StandinServer]:
    server = serve_in_thread(MASTER, MODELS)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def litellm(_standin_server: StandinServer) -> Iterator[Standin]:
    _standin_server.state.reset()
    yield Standin(_standin_server)
    with _standin_server.state.lock:
        CLIENT_REQUESTS.extend(_standin_server.state.log)


#: The modules that bring up real programs, longest first: under pytest-xdist (``-n``, README
#: "Running the tests") each is one unit of work that one worker runs alone, in this order, while
#: another worker runs every test that needs none of them (the "local" group).
HEAVY_FIRST = ("test_windows", "test_rolling_e2e", "test_stack_e2e", "test_backup_e2e",
               "test_stack_compose", "test_real_keys", "test_real_workers", "test_real_master",
               "test_real_drift", "test_real_handover", "test_real_root_path",
               "test_peer_openwebui_connections", "test_peer_openwebui", "test_peer_litellm")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist turns the xdist_group marks into its units
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The contract check reads what every other test sent: it runs last, in the worker that runs
    every test without a real program (the "local" group: those tests' requests are what it
    checks). Each module with a real program is a group of its own, the longest first."""

    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")

    def group(item: pytest.Item) -> str:
        if item.get_closest_marker("contract") is None and module(item) in HEAVY_FIRST:
            return module(item)
        return "local"

    order = {name: rank for rank, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: (order.get(group(item), len(order)),
                                 item.get_closest_marker("contract") is not None))
    if not WINDOWS:  # the inner Windows run spreads its tests one by one (tests/test_windows.py)
        for item in items:
            item.add_marker(pytest.mark.xdist_group(group(item)))


@pytest.fixture
def litellm_under_path() -> Iterator[Standin]:
    """The stand-in as behind a reverse proxy with LiteLLM's ``SERVER_ROOT_PATH=/litellm``:
    its API at ``<host>/litellm`` only, another application at every other path."""
    server = serve_in_thread(MASTER, MODELS, root_path="/litellm")
    yield Standin(server)
    with server.state.lock:
        CLIENT_REQUESTS.extend(server.state.log)
    server.shutdown()
    server.server_close()


@pytest.fixture
def project(tmp_path: Path, litellm: Standin) -> Project:
    # LITELLM_PORT agrees with the stand-in's URL (LITELLM_PROXY_URL): no "note: using ..." line
    from urllib.parse import urlsplit

    env = write_env(tmp_path / ".env", LITELLM_PORT=str(urlsplit(litellm.url).port))
    return Project(tmp_path, env, litellm.url)


@pytest.fixture
def file_attribute() -> Iterator[Any]:
    """``apply(path, "+i")``: ``chattr`` a real file attribute (immutable, append-only) onto
    ``path``, lifted again after the test. Skips, saying why, where that cannot be done: not
    root, no ``chattr``, a file system without attributes, Windows."""
    import os
    import shutil
    import subprocess

    applied: list[Path] = []

    def apply(path: Path, flag: str) -> None:
        chattr = shutil.which("chattr")
        if WINDOWS or chattr is None or os.geteuid() != 0:
            pytest.skip("POSIX file attributes: a real immutable file needs chattr as root "
                        "(Linux; Windows has no such attribute)")
        done = subprocess.run([chattr, flag, str(path)], capture_output=True, text=True,
                              timeout=30, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr {flag} is refused here: {done.stderr.strip()}")
        applied.append(path)

    yield apply
    for path in reversed(applied):
        subprocess.run([str(shutil.which("chattr")), "-ia", str(path)], capture_output=True,
                       timeout=30, check=False)


# --------------------------------------------------------------------------- the real LiteLLM


@pytest.fixture(scope="session")
def real_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """PostgreSQL 15 with LiteLLM's schema in a template database (tests/support/real_litellm.py)."""
    from tests.support.real_litellm import start_postgres

    postgres = start_postgres(tmp_path_factory.mktemp("real-postgres"))
    yield postgres
    postgres.stop()


@pytest.fixture(scope="session")
def real_provider() -> Iterator[Any]:
    """The fake OpenAI-compatible model provider behind every model the real proxy serves."""
    from tests.support.real_litellm import start_provider

    provider = start_provider()
    yield provider
    provider.shutdown()
    provider.server_close()
