"""The real programs the project talks to, run on 127.0.0.1 for the peer suite.

- the LiteLLM proxy (``litellm[proxy]`` at the pinned release, in its own venv) without a database: its key
  store needs Prisma engine binaries that cannot be downloaded here, so it shows everything but
  the key lifecycle - startup, health, readiness, auth errors, the no-database failures, and its
  own OpenAPI document, against which every request of the client is checked;
- Open WebUI 0.12.4 (its own venv), pointed at the LiteLLM stand-in.

`bash .ci/setup` (root) installs both under $AI_GATEWAY_CACHE. Missing, the peer tests skip
with the reason - except in CI, where they fail.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import stop_process
from tests.support.stack import CACHE, LITELLM_VENV, free_port, require

OPENWEBUI_VENV = Path(os.environ.get("OPENWEBUI_VENV") or CACHE / "openwebui")
PEER_MASTER = "sk-peer-master-" + "p" * 24
CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:9/v1
      api_key: sk-not-used-anywhere
"""


@dataclass
class Peer:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        stop_process(self.process, grace=15)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


def litellm_binary() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    require(binary.exists(), f"the LiteLLM proxy is not installed in {LITELLM_VENV}")
    return binary


def start_litellm(folder: Path, *, port: int | None = None, config: str = CONFIG,
                  master: str = PEER_MASTER) -> Peer:
    """Start the real proxy; do not wait for it (the tests time that themselves)."""
    binary = litellm_binary()
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(config)
    log = folder / "litellm.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "DATABASE_URL"))}
    env.update({"LITELLM_MASTER_KEY": master, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False", "NO_DOCS": "False"})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(binary), "--config", str(folder / "config.yaml"), "--host", "127.0.0.1",
             "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=folder)
    return Peer(process, f"http://127.0.0.1:{port}", log)


def wait_http(url: str, timeout: float, peer: Peer | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer is not None and peer.process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited:\n{peer.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout}s:\n{peer.tail() if peer else ''}")


def start_openwebui(folder: Path, *, litellm_url: str, key: str, email: str,
                    password: str) -> Peer:
    binary = OPENWEBUI_VENV / "bin" / "open-webui"
    require(binary.exists(), f"Open WebUI is not installed in {OPENWEBUI_VENV}")
    port = free_port()
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "WEBUI_"))}
    env.update({
        "DATA_DIR": str(data), "OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1",
        "ENABLE_OLLAMA_API": "false", "WEBUI_SECRET_KEY": "peer-secret-" + "s" * 20,
        "WEBUI_ADMIN_EMAIL": email, "WEBUI_ADMIN_PASSWORD": password,
        "OPENAI_API_BASE_URL": f"{litellm_url}/v1", "OPENAI_API_KEY": key,
        "ENABLE_VERSION_UPDATE_CHECK": "false", "HOME": str(folder),
    })
    log = folder / "open-webui.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(binary), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=folder)
    peer = Peer(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_http(f"{peer.url}/health", 900, peer)  # minutes on a busy machine; an exit is seen at once
    except BaseException:
        peer.stop()
        raise
    return peer
