"""LiteLLM behind a reverse proxy under a path, for real: the real LiteLLM started with
``SERVER_ROOT_PATH=/litellm`` and its PostgreSQL key store, reached through a loopback reverse
proxy (tests/support/relay.py) that serves it at ``/litellm`` and another application at every
other path - as ``https://host/litellm`` with another app at ``/``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import Project, write_env
from tests.support.real_litellm import REAL_MASTER, RealProxy, running_proxy
from tests.support.relay import Relay, start_relay

pytestmark = pytest.mark.real

ROOT = "/litellm"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, real_postgres: Any, real_provider: Any
         ) -> Iterator[RealProxy]:
    with running_proxy(tmp_path_factory.mktemp("real-litellm-root-path"), real_postgres,
                       real_provider, extra_env={"SERVER_ROOT_PATH": ROOT}) as proxy:
        yield proxy


@pytest.fixture
def front(real: RealProxy) -> Iterator[Relay]:
    relay = start_relay(real.url, root_path=ROOT)
    yield relay
    relay.close()


@pytest.fixture
def rp(tmp_path: Path, front: Relay) -> Project:
    env = write_env(tmp_path / ".env", LITELLM_MASTER_KEY=REAL_MASTER,
                    LITELLM_PORT=front.url.rsplit(":", 1)[1])
    return Project(tmp_path, env, front.url + ROOT)


def test_keys_tasks_reach_litellm_under_its_root_path(rp: Project, real: RealProxy,
                                                      front: Relay) -> None:
    url = front.url + ROOT
    done = rp.run("keys.create", "--url", url, timeout=120)
    assert done.returncode == 0, done.stderr
    key = rp.value("VIRTUAL_KEY")
    assert real.accepts(key)
    assert front.count(f"{ROOT}/key/generate") == 1
    rotated = rp.run("keys.rotate", "--url", url + "/", timeout=120)
    assert rotated.returncode == 0, rotated.stderr
    assert rp.value("VIRTUAL_KEY") != key and real.accepts(rp.value("VIRTUAL_KEY"))
    listed = rp.run("keys.list", timeout=120)  # LITELLM_PROXY_URL=<front>/litellm
    assert listed.returncode == 0, listed.stderr
    assert "VIRTUAL_KEY" in listed.stdout
    outside = [r["path"] for r in front.log if not r["path"].startswith(ROOT + "/")]
    assert outside == [], outside


def test_the_host_root_is_the_other_application(rp: Project, front: Relay) -> None:
    done = rp.run("keys.list", "--url", front.url, timeout=120)
    assert done.returncode == 7, done.stderr
    assert "not as LiteLLM does; is something else on that port?" in done.stderr
    wrong = rp.run("keys.list", "--url", front.url + "/other", timeout=120)
    assert wrong.returncode == 7, wrong.stderr
    assert "is LiteLLM served under /other there (its SERVER_ROOT_PATH" in wrong.stderr
