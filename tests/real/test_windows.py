"""The non-Docker suites under a real Windows CPython: python.org's 3.12.8 build on Wine.

One test runs an inner ``pytest`` under ``python.exe`` (tests/windows/winpy.py) over the
.env store, the env and keys tasks through the real command line against the LiteLLM stand-in
on 127.0.0.1, settings, the CLI's shape, rotation faults, leaks, crash safety
(``Popen.kill`` = TerminateProcess there) and tests/windows/ (the DACL through the real
Windows API, a .env held open by another process, Notepad's BOM and CRLF, no Docker). It
prints the inner counts and fails showing the inner failures. Inner skips must carry one of
the reasons below - a test that does not apply on Windows says why, and nothing else may skip.

Without Wine or the prepared CPython (``tests/windows/setup.sh``, run by ``.ci/setup`` as
root) it skips with the reason; in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.support.stack import require
from tests.windows import winpy

SUITES = [
    "tests/unit/test_envfile.py", "tests/unit/test_perms.py", "tests/unit/test_settings.py",
    "tests/unit/test_litellm_client.py", "tests/unit/test_crash_safety.py",
    "tests/cli/test_env_cli.py", "tests/cli/test_keys_cli.py", "tests/cli/test_cli_shape.py",
    "tests/cli/test_rotation_faults.py", "tests/cli/test_leaks_and_inputs.py",
    "tests/cli/test_handover.py", "tests/windows",
]
#: The only reasons an inner test may skip for (prefixes), each a fact about Windows or Wine.
ALLOWED_SKIPS = (
    "symlinks need SeCreateSymbolicLinkPrivilege",
    "needs fork()",
    "no git on PATH",
    "POSIX signals:",
    "POSIX process table:",
    "POSIX pipes:",
    "POSIX file attributes:",
    "Windows' EACCES is also its sharing violation",
)
#: Far fewer passes than this means the inner run lost tests, not that they passed.
MIN_PASSED = 250
TIMEOUT = 1800
#: Inner pytest-xdist workers: the Windows processes spend most of their time starting up
#: under Wine (imports cost about 10x), so two workers use a 2-core machine's second core.
WORKERS = os.environ.get("AI_GATEWAY_WINDOWS_WORKERS", "2")


def test_the_suites_pass_under_a_windows_cpython(tmp_path: Path) -> None:
    reason = winpy.missing()
    require(reason is None, str(reason))
    junit = tmp_path / "windows.xml"
    started = time.monotonic()
    done = winpy.run(
        ["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", "--tb=short", "-n", WORKERS,
         "--durations=8", "-m", "not docker and not peer and not contract",
         f"--junitxml={winpy.windows_path(junit)}", *SUITES],
        timeout=TIMEOUT,
    )
    took = time.monotonic() - started
    output = done.stdout + done.stderr
    assert junit.exists(), f"the Windows pytest did not run (exit {done.returncode}):\n{output[-6000:]}"
    suite = ET.parse(junit).getroot()  # noqa: S314 - the report our own pytest just wrote
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    skips = {}
    for case in suite.iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            skips[f"{case.get('classname')}.{case.get('name')}"] = skipped.get("message", "")
    print(f"\nWindows CPython (Wine): {passed} passed, {counts['failures']} failed, "
          f"{counts['errors']} errors, {counts['skipped']} skipped, in {took:.0f}s")
    for name, why in sorted(skips.items()):
        print(f"  skipped {name}: {why}")
    if "slowest" in output:
        print(output[output.index("slowest") - 30:].split("=====", 1)[0].rstrip())
    assert counts["failures"] == counts["errors"] == 0 and done.returncode == 0, (
        f"under Windows:\n{output[-12000:]}")
    unexplained = {n: why for n, why in skips.items()
                   if not any(allowed in why for allowed in ALLOWED_SKIPS)}
    assert not unexplained, f"skipped under Windows without an allowed reason: {unexplained}"
    assert passed >= MIN_PASSED, f"only {passed} tests passed under Windows"


def test_the_windows_cpython_is_windows() -> None:
    reason = winpy.missing()
    require(reason is None, str(reason))
    done = winpy.run(["-c", "import sys, os, win32security; print(sys.platform, os.name)"], timeout=120)
    assert done.stdout.split() == ["win32", "nt"], done.stderr
