"""Ending the programs the tests start (the real LiteLLM proxy, Open WebUI)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], grace: float) -> None:
    """Terminate ``process`` if it still runs; kill it when it has not exited ``grace`` s later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
