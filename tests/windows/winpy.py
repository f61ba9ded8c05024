"""Run python.org's Windows CPython under Wine (installed by tests/windows/setup.sh).

Used by tests/real/test_windows.py, and by hand to run any test under Windows::

    python3 -m tests.windows.winpy -m pytest -q tests/unit/test_envfile.py

Every Windows process gets a clean environment (no Linux ``PYTHON*``/``PIP_*`` leaking in),
std handles that are pipes or /dev/null (a regular file kills CPython at start under Wine 8.0:
WinError 6), WMI disabled (Python 3.12's ``_wmi`` crashes Wine 8.0) and the clone on
``PYTHONPATH``. One ``wineserver`` is kept alive (with stdio on /dev/null, so its services do
not hold our pipes open) and exits on its own a minute after the last Windows process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("AI_GATEWAY_CACHE", "/var/cache/ai-gateway-ci"))
ROOT = Path(os.environ.get("WINPY_ROOT", CACHE / "wine"))


def windows_path(path: Path) -> str:
    """A Linux path as the Windows process sees it (Wine maps ``/`` to drive ``Z:``)."""
    return str(PureWindowsPath("Z:\\", *Path(path).resolve().parts[1:]))


def missing() -> str | None:
    """Why the Windows CPython cannot run here, or None when it can."""
    if sys.platform == "win32":
        return "this is already Windows"
    if shutil.which("wine") is None or shutil.which("wineserver") is None:
        return "Wine is not installed"
    if not (ROOT / "READY").exists():
        return f"no Windows CPython in {ROOT} (tests/windows/setup.sh makes it)"
    prefix = ROOT / "prefix"
    if not prefix.is_dir():
        return f"no Wine prefix in {prefix} (tests/windows/setup.sh makes it)"
    if prefix.stat().st_uid != os.getuid():
        return f"the Wine prefix {prefix} belongs to another user"
    return None


def environ(**extra: str) -> dict[str, str]:
    env = {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "WINEPREFIX": str(ROOT / "prefix"),
        "WINEDEBUG": "-all",
        "WINEDLLOVERRIDES": "mscoree,mshtml,wbemprox=",
        "PYTHONPATH": windows_path(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUTF8": "0",
    }
    env.update(extra)
    return env


def start_server() -> None:
    """A wineserver and Wine's own services (started by ``wineboot``) with stdio on /dev/null:
    started by the first Windows process instead, the services would inherit its stdout pipe
    and keep it open - a captured run would wait for them. The server stays 60 s after the
    last Windows process ends."""
    quiet = {"env": environ(), "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
             "stderr": subprocess.DEVNULL}
    subprocess.run(["wineserver", "-p60"], timeout=60, check=False, **quiet)  # type: ignore[call-overload]
    subprocess.run(["wine", "wineboot"], timeout=300, check=False, **quiet)  # type: ignore[call-overload]


def command(args: Sequence[str]) -> list[str]:
    return ["wine", str(ROOT / "py" / "python.exe"), *args]


def run(args: Sequence[str], *, timeout: float, capture: bool = True,
        **extra_env: str) -> subprocess.CompletedProcess[str]:
    """``python.exe <args>`` under Wine with cwd at the clone; stdout/stderr captured (pipes)."""
    start_server()
    return subprocess.run(
        command(args), cwd=REPO, env=environ(**extra_env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None,
        text=True, encoding="utf-8", errors="replace", timeout=timeout, check=False,
    )


if __name__ == "__main__":  # pragma: no cover - a tool for people
    reason = missing()
    if reason:
        sys.exit(f"error: {reason}")
    start_server()
    # through a pipe even at a terminal: Wine's console handles are fine, files are not
    proc = subprocess.Popen(command(sys.argv[1:]), cwd=REPO, env=environ(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    for chunk in iter(lambda: proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    sys.exit(proc.wait())
