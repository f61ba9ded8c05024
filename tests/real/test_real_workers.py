"""The real LiteLLM with two workers (``--num_workers 2``): what a deleted key does, and what we say.

Each worker keeps its own in-memory cache of the keys it has seen (without a Redis cache shared
between them), so after ``/key/delete`` the worker that did not handle the delete may accept the
deleted key for up to ``general_settings.user_api_key_cache_ttl`` (60 s by default; seen:
10/20, 4/20, 8/20 requests still 200 at 0, 10, 45 s). The tasks therefore never claim the old key
"is refused": they say it was deleted in LiteLLM, and the README gives the window. This test holds
both facts against the real proxy: the key is gone from the database at once, and every worker
refuses it within the documented window.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import Project, write_env
from tests.support.real_litellm import REAL_MASTER, RealProxy, running_proxy

pytestmark = pytest.mark.real

CACHE_TTL = 60  # LiteLLM's default user_api_key_cache_ttl, in seconds


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory, real_postgres: Any, real_provider: Any
                ) -> Iterator[RealProxy]:
    with running_proxy(tmp_path_factory.mktemp("real-2w"), real_postgres, real_provider,
                       workers=2) as proxy:
        yield proxy


def accepted(url: str, key: str, tries: int = 20, sent: list[float] | None = None) -> int:
    """How many of ``tries`` requests, each on a new connection (so spread over the workers), got
    200; ``sent`` collects the time (monotonic) each accepted request was sent - the moment the
    key was known to be still accepted, however long a busy machine took to answer."""
    hits = 0
    for _ in range(tries):
        request = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10):
                hits += 1
                if sent is not None:
                    sent.append(started)
        except urllib.error.HTTPError:
            pass
    return hits


def test_a_deleted_key_with_two_workers(tmp_path: Path, two_workers: RealProxy) -> None:
    env = write_env(tmp_path / ".env", LITELLM_MASTER_KEY=REAL_MASTER,
                    LITELLM_PORT=two_workers.url.rsplit(":", 1)[1])
    project = Project(tmp_path, env, two_workers.url)
    assert project.run("keys.create").returncode == 0
    old = project.value("VIRTUAL_KEY")
    assert accepted(two_workers.url, old) == 20  # both workers have it cached now
    done = project.run("keys.rotate")
    deleted_at = time.monotonic()
    assert done.returncode == 0, done.stderr
    assert "refused" not in done.stdout, "the old key may still be accepted by another worker"
    new = project.value("VIRTUAL_KEY")
    assert accepted(two_workers.url, new) == 20
    # gone from LiteLLM's database at once, whatever the workers' caches say
    token = hashlib.sha256(old.encode()).hexdigest()
    status, info = two_workers.call("GET", f"/key/info?key={token}")
    assert status == 404 or info["info"].get("status") == "deleted", (status, info)
    assert token not in {k["token"] for k in two_workers.keys()}
    # and refused by every worker within the cache window
    sent: list[float] = []
    while accepted(two_workers.url, old, sent=sent) > 0:
        # judged by when the accepted request was sent, not by when the loop got round to it
        assert sent[-1] - deleted_at < CACHE_TTL + 15, "a worker accepted it past the TTL"
        time.sleep(2)
    window = time.monotonic() - deleted_at
    print(f"\nthe deleted key was refused by both workers {window:.0f}s after the rotation")
