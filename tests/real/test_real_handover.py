"""hand_over against the REAL LiteLLM and its database: a Continue.dev key rotated with its
``~/.continue/.env`` consumer, killed after the switch and finished by the next task; the file
always holds a key the real proxy accepts. And ``keys.continue-config`` from the proxy's own
answer. The proxy, the relay and the fixtures are those of tests/real/test_real_keys.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.envstore import envfile
from tests.real.test_real_keys import lite, ok, real, relay, rp  # noqa: F401 - fixtures
from tests.support.project import Project
from tests.support.real_litellm import RealProxy
from tests.support.relay import Relay

pytestmark = pytest.mark.real

ALIAS = "Continue.dev Key"


def config(project: Project, target: Path) -> str:
    path = project.dir / "invoke.json"
    path.write_text(json.dumps({"gateway": {"keys": {"continue-dev": {
        "env_var": "CONTINUE_DEV_KEY", "alias": ALIAS, "team_id": "continue-dev-team",
        "models": ["claude-haiku"],
        "hand_over": [{"dotenv": str(target), "var": "LITELLM_API_KEY"}]}}}}))
    return str(path)


def test_a_rotation_killed_after_the_switch_keeps_the_consumer_working(
        rp: Project, lite: RealProxy, relay: Relay) -> None:  # noqa: F811
    target = rp.dir / "home" / ".continue" / ".env"
    cfg = config(rp, target)
    ok(rp, "-f", cfg, "keys.create", "--name", "continue-dev")
    old = rp.value("CONTINUE_DEV_KEY")
    assert envfile.load(target).get("LITELLM_API_KEY") == old and lite.accepts(old)
    seen = relay.count("/key/delete")
    relay.hold("/key/delete", "before", seconds=60)
    proc = rp.start("-f", cfg, "keys.rotate", "--name", "continue-dev")
    try:
        relay.wait_for("/key/delete", seen)
        proc.kill()
        proc.communicate(timeout=10)
    finally:
        relay.reset()
    new = rp.value("CONTINUE_DEV_KEY")
    assert new != old
    assert envfile.load(target).get("LITELLM_API_KEY") == new, "handed over before retiring"
    assert lite.accepts(new) and lite.accepts(old), "the old key is not retired yet"
    listed = json.loads(ok(rp, "-f", cfg, "keys.list", "--json"))
    assert [s["state"] for s in listed["hand_over"]] == ["current"]
    assert lite.accepts(new) and not lite.accepts(old)
    assert not (rp.dir / ".env.keys-journal.json").exists()
    printed = ok(rp, "-f", cfg, "keys.continue-config", "--json")
    [model] = json.loads(printed)["models"]
    assert model["model"] == "claude-haiku" and model["apiBase"] == f"{rp.url}/v1"
    assert model["apiKey"] == "${{ secrets.LITELLM_API_KEY }}" and new not in printed
