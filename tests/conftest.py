"""Shared fixtures: the LiteLLM stand-in on 127.0.0.1, a project folder with a .env, the CLI.

The helpers themselves live in tests/support/; this file holds only fixtures and pytest hooks.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
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
from tests.support.stack import RUN_DIR_VAR, StackProject, end_of_run  # noqa: E402
from tests.support.standin import StandinServer, serve_in_thread  # noqa: E402

#: tests/windows/ holds tests that only mean something on Windows; tests/real/test_windows.py runs
#: them (with the other non-Docker suites) under a Windows CPython. Elsewhere: not collected.
collect_ignore_glob = [] if WINDOWS else ["windows/*"]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the tasks the tests start, however the test run itself was started.

    A shell without job control starts a background command (``cmd &`` in a script, a CI
    runner's step) with SIGINT ignored, and every process it starts inherits that across
    ``exec``: the tasks would then never see the SIGINT the Ctrl-C tests send. A Python
    handler, unlike SIG_IGN, is reset to the default on ``exec``, so the tasks get Python's
    own KeyboardInterrupt again."""
    sigint = getattr(signal, "SIGINT", None)
    if (sigint is not None and threading.current_thread() is threading.main_thread()
            and signal.getsignal(sigint) == signal.SIG_IGN):
        signal.signal(sigint, signal.default_int_handler)
    if not hasattr(config, "workerinput"):  # the controller, before it starts any worker
        os.environ[RUN_DIR_VAR] = tempfile.mkdtemp(prefix="aigw-test-run-")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test on a test stack reports the stack's containers and their last log lines
    (what a failure in CI can be understood from afterwards)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and report.when == "call" and isinstance(stack, StackProject):
        report.sections.append(("the test stack", stack.diagnosis()))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Once every test of the run has ended (the controller): what the tests left to undo."""
    if hasattr(config, "workerinput"):
        return
    run_dir = os.environ.pop(RUN_DIR_VAR, None)
    if run_dir:
        end_of_run(Path(run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)


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


#: The modules that bring up real programs. Under pytest-xdist (``-n``, README "Running the
#: tests") each is one unit of work that one worker runs whole (its module-scoped program starts
#: once), while another worker runs every test that needs none of them (the "local" unit). The
#: modules in SPLIT start their programs per test: each of their tests is a unit of its own, so
#: they spread over the workers - except a test class, whose tests share one program (a
#: class-scoped fixture) and so form one unit.
HEAVY = ("test_windows", "test_stack_e2e", "test_rolling_e2e", "test_swarm_e2e", "test_upgrade_e2e",
         "test_backup_e2e", "test_stack_compose", "test_real_keys", "test_real_workers",
         "test_real_master", "test_real_drift", "test_real_handover", "test_real_root_path",
         "test_peer_openwebui_connections", "test_peer_openwebui", "test_peer_litellm")
SPLIT = ("test_stack_e2e",)
#: Worker-minutes of each unit in a fresh-clone run (``python bench/test_units.py <junit.xml>``
#: prints them). The units start longest first, so the workers end at about the same time; an
#: unlisted unit starts after the listed ones.
UNIT_MINUTES = {
    "test_stack_e2e::TestRunningStack": 21.6, "test_rolling_e2e": 16.5, "test_windows": 15.3,
    "local": 9.2, "test_upgrade_e2e": 6.5, "test_stack_e2e::test_first_run_rotate_revoke_stop": 5.7,
    "test_backup_e2e": 4.9, "test_swarm_e2e": 4.8, "test_real_keys": 3.1, "test_real_workers": 2.4,
    "test_stack_e2e::test_unpublished_litellm_port_goes_through_the_container": 2.2,
    "test_peer_openwebui_connections": 2.1, "test_real_master": 1.9, "test_peer_litellm": 1.8,
    "test_stack_e2e::test_a_first_start_finishes_an_interrupted_master_key_rotation": 1.1,
    "test_stack_e2e::test_no_create_key_leaves_open_webui_stopped": 1.2,
}


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")


def xdist_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its heavy module's name; in the modules in SPLIT, the
    test itself or its class (``<module>::<test or class>``); or "local"."""
    module = _module(nodeid)
    if nodeid == CONTRACT or module not in HEAVY:
        return "local"
    if module in SPLIT:
        return "::".join([module, *nodeid.split("::")[1:2]])
    return module


#: The contract check's node id: pytest-xdist's scheduler sees ids only (no marks); the collection
#: hook below refuses a test marked ``contract`` that is not named here.
CONTRACT = "tests/real/test_peer_litellm.py::test_every_request_matches_the_real_proxys_schema"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The contract check reads what every other test sent: it runs last, in the worker that runs
    every test without a real program (the "local" unit: those tests' requests are what it
    checks). The units come longest first (UNIT_MINUTES)."""
    unnamed = [item.nodeid for item in items
               if item.get_closest_marker("contract") and item.nodeid != CONTRACT]
    if unnamed:
        raise pytest.UsageError(f"tests/conftest.py: add {unnamed} to CONTRACT")
    heavy = {name: rank for rank, name in enumerate(HEAVY)}

    def start(item: pytest.Item) -> tuple[float, int, str, bool]:
        unit = xdist_unit(item.nodeid)
        return (-UNIT_MINUTES.get(unit, 0.0), heavy.get(unit.split("::")[0], len(heavy)), unit,
                item.nodeid == CONTRACT)

    items.sort(key=start)  # stable: a unit's tests keep their order in the file


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's ``loadscope`` scheduling (whole units, in collection order with
    ``--no-loadscope-reorder``) over the units above. Not its ``loadgroup``: with pytest 9.2 its
    ``xdist_group`` marks no longer reach the scheduler (it renames ``item._nodeid``, which
    pytest 9.2 no longer reads), so every test was scheduled alone. Under the inner Windows run
    every test is a unit (tests/real/test_windows.py)."""
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if WINDOWS else xdist_unit(nodeid)

    return UnitScheduling(config, log)


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
