"""The LiteLLM client: one clear error per kind of failure, all three error shapes, paging."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

import pytest

from tasks.base.errors import ApiError, AuthError, NoDatabaseError, ProxyUnreachableError
from tasks.clients.litellm import READY_FRESH_SECONDS, LiteLLM, error_message, token_of
from tests.support.project import MASTER, Standin
from tests.support.standin import NotLiteLLM


@pytest.mark.parametrize(
    ("body", "message", "kind"),
    [
        ({"error": {"message": "Key not found.", "type": "not_found", "param": "key", "code": "404"}},
         "Key not found.", "not_found"),
        ({"error": {"message": "{'error': 'No keys found'}", "type": "x"}}, "No keys found", "x"),
        ({"detail": "Team not found"}, "Team not found", ""),
        ({"detail": {"error": "Team id = t already exists."}}, "Team id = t already exists.", ""),
        ({"detail": [{"loc": ["body", "models"], "msg": "Input should be a valid list"}]},
         "models: Input should be a valid list", "validation_error"),
        ({"error": {"message": "Internal server error", "type": "internal_server_error"}},
         "Internal server error", "internal_server_error"),
    ],
)
def test_error_shapes(body: object, message: str, kind: str) -> None:
    assert error_message(body) == (message, kind)


def test_token_of() -> None:
    assert token_of("sk-abc") == hashlib.sha256(b"sk-abc").hexdigest()
    assert token_of("f" * 64) == "f" * 64


@pytest.fixture
def client(litellm: Standin) -> Iterator[LiteLLM]:
    with LiteLLM(litellm.url, MASTER, timeout=2) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening() -> None:
    with LiteLLM(f"http://127.0.0.1:{free_port()}", MASTER, timeout=2) as c, pytest.raises(
        ProxyUnreachableError, match="cannot connect to LiteLLM"
    ):
        c.readiness()


def test_hang_ends_within_the_timeout(litellm: Standin) -> None:
    litellm.fault("/health/readiness", mode="hang", delay=60)
    started = time.monotonic()
    with LiteLLM(litellm.url, MASTER, timeout=0.5) as c, pytest.raises(
        ProxyUnreachableError, match="did not answer /health/readiness within 0.5s"
    ):
        c.readiness()
    # the timeout ended it, not the hang (60 s): a bound far from both, whatever the machine
    assert time.monotonic() - started < 30


def test_connection_reset(client: LiteLLM, litellm: Standin) -> None:
    litellm.fault("/key/list", mode="reset")
    with pytest.raises(ProxyUnreachableError, match="broke during /key/list"):
        list(client.list_keys())


@pytest.fixture
def silent_server() -> Iterator[tuple[str, Callable[[str], None]]]:
    """A TCP server on 127.0.0.1 that is no LiteLLM (so the contract check never sees its
    requests): ``set_mode("hang")`` reads a request and never answers, ``"close"`` reads it and
    closes the connection without an answer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    mode = {"now": "hang"}
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(65536)
            if mode["now"] == "close":
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", lambda m: mode.update(now=m)
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize(("fault", "says"), [
    (None, "cannot connect to Open WebUI at {url}; is it running and WEBUI_PORT right?"),
    ("hang", "Open WebUI at {url} did not answer /api/v1/auths/signin within 0.5s"),
    ("close", "the connection to Open WebUI at {url} broke during /api/v1/auths/signin"),
])
def test_open_webui_failures_read_as_litellms_do(
        silent_server: tuple[str, Callable[[str], None]], fault: str | None, says: str) -> None:
    """Both clients name a request that got no answer the same way (clients.http)."""
    from tasks.base.errors import OpenWebUIUnreachableError
    from tasks.clients.openwebui import OpenWebUI

    url, set_mode = silent_server
    if fault is None:
        url = f"http://127.0.0.1:{free_port()}"
    else:
        set_mode(fault)
    with OpenWebUI(url, "admin@example.com", "pw", timeout=0.5) as webui, pytest.raises(
            OpenWebUIUnreachableError) as caught:
        webui.token  # noqa: B018 - signing in is the request
    assert caught.value.message.startswith(says.format(url=url)), caught.value.message


def test_garbage_json(client: LiteLLM, litellm: Standin) -> None:
    litellm.fault("/key/list", mode="garbage")
    with pytest.raises(ApiError, match="without JSON"):
        list(client.list_keys())


@pytest.mark.parametrize("status", [502, 503])
def test_html_error_page_from_a_proxy_in_front(client: LiteLLM, litellm: Standin, status: int) -> None:
    litellm.fault("/key/generate", mode="html", status=status)
    with pytest.raises(ApiError, match=f"HTTP {status} with text/html, not LiteLLM's JSON"):
        client.generate_key({"key_alias": "x"})


def test_slow_answer_beyond_timeout(litellm: Standin) -> None:
    litellm.fault("/key/info", mode="slow", delay=2)
    with LiteLLM(litellm.url, MASTER, timeout=0.5) as c, pytest.raises(ProxyUnreachableError):
        c.key_info("sk-whatever")


def test_wrong_master_key(litellm: Standin) -> None:
    with LiteLLM(litellm.url, "sk-wrong-master-key-xxxxxxxx", timeout=2) as c, pytest.raises(
        AuthError, match="refused the master key"
    ) as err:
        c.team_info("t")
    assert "sk-wrong" not in err.value.message


def test_no_database(client: LiteLLM, litellm: Standin) -> None:
    litellm.state.db = False
    with pytest.raises(NoDatabaseError, match="database is 'Not connected'"):
        client.require_database()
    with pytest.raises(NoDatabaseError, match="no database connected"):
        list(client.list_keys())  # 500 JSON "Database not connected", as 1.108.7 answers
    with pytest.raises(NoDatabaseError):
        client.team_info("t")  # 500 JSON with the message as a Python repr
    for call in (lambda: client.generate_key({"key_alias": "x"}),  # each with its own words
                 lambda: client.delete_keys(keys=["sk-x"]), lambda: client.new_team("t", "T")):
        with pytest.raises(NoDatabaseError):
            call()
    litellm.fault("/key/generate", mode="plain500")
    litellm.state.db = True
    with pytest.raises(ApiError, match="internal error .HTTP 500, no details"):
        client.generate_key({"key_alias": "x"})  # Starlette's bare text/plain 500


def test_a_missed_database_ping_is_asked_again(client: LiteLLM, litellm: Standin) -> None:
    """LiteLLM answers ``disconnected`` when its own 2 s ping misses its deadline (a busy
    machine; an upgrade once rolled back a working stack on it): asked again, not final."""
    busy = {"status": 503, "body": {"status": "healthy", "db": "disconnected"}}
    litellm.fault("/health/readiness", times=2, **busy)
    assert client.database(wait=30) == "connected"
    assert len(litellm.requests("/health/readiness")) == 3
    litellm.fault("/health/readiness", times=1000, **busy)
    with pytest.raises(NoDatabaseError, match="database is 'disconnected'"):
        client.require_database(wait=1.5)



def test_the_readiness_a_task_reached_litellm_with_serves_its_first_database_check(
        client: LiteLLM, litellm: Standin) -> None:
    """keys.list asked /health/readiness twice (to reach LiteLLM, then for its database): a
    ``connected`` answer less than READY_FRESH_SECONDS old stands in for the second ask, once."""
    litellm.state.db = True
    client.readiness()
    client.require_database()
    assert len(litellm.requests("/health/readiness")) == 1
    litellm.state.db = False  # a later check asks again, and sees it
    with pytest.raises(NoDatabaseError):
        client.require_database(wait=0)
    assert len(litellm.requests("/health/readiness")) == 2
    litellm.state.db = True
    client.readiness()
    answered = time.monotonic()
    # until the answer is too old to stand in, on the clock the client reads (on Windows
    # time.monotonic ticks every ~16 ms, so a sleep of the window can end just short of it)
    while time.monotonic() - answered <= READY_FRESH_SECONDS:
        time.sleep(0.05)
    litellm.state.db = False
    with pytest.raises(NoDatabaseError):
        client.require_database(wait=0)


def test_paging_follows_every_page(client: LiteLLM, litellm: Standin) -> None:
    for i in range(250):
        client.generate_key({"key_alias": f"k{i}"})
    before = len(litellm.requests("/key/list"))
    aliases = {k["key_alias"] for k in client.list_keys()}
    assert aliases == {f"k{i}" for i in range(250)}
    assert len(litellm.requests("/key/list")) - before == 3
    assert all(r["query"]["size"] == "100" for r in litellm.requests("/key/list"))


def test_a_page_without_keys_before_the_count_is_reached(client: LiteLLM, litellm: Standin) -> None:
    """A short list would be taken for the whole one: a key never seen is never rotated."""
    for i in range(150):
        client.generate_key({"key_alias": f"k{i}"})
    litellm.fault("/key/list", status=200, skip=1, body={
        "keys": [], "total_count": 150, "current_page": 2, "total_pages": 2})
    with pytest.raises(ApiError, match="counted 150 keys, and page 2 answered none after 100"):
        list(client.list_keys())
    assert len(list(client.list_keys())) == 150  # the fault is spent: the next run is whole


def test_a_port_that_answers_but_is_not_litellm() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotLiteLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with LiteLLM(url, MASTER, timeout=2) as c, pytest.raises(
            ApiError, match="not as LiteLLM does; is something else on that port"
        ):
            c.require_database()
    finally:
        server.shutdown()
        server.server_close()


def test_the_master_key_travels_only_in_the_header(client: LiteLLM, litellm: Standin) -> None:
    client.require_database()
    client.team_info("x")
    for request in litellm.requests():
        assert MASTER not in str(request)



def test_find_key_takes_the_held_key_else_the_first_with_the_alias(
        client: LiteLLM, litellm: Standin) -> None:
    """keys.create, keys.rotate and --older-than find a key one way: the key .env holds, else
    the first key named with its alias - read through /key/info in both cases."""
    held = client.generate_key({"key_alias": "held"})["key"]
    named = client.generate_key({"key_alias": "named"})["key"]
    token, info = client.find_key(held, "named") or ("", {})
    assert token == token_of(held) and info["key_alias"] == "held"
    before = len(litellm.requests("/key/info"))
    for gone in ("sk-not-in-litellm", ""):
        token, info = client.find_key(gone, "named") or ("", {})
        assert token == token_of(named) and info["key_alias"] == "named"
    asked = [r["query"]["key"] for r in litellm.requests("/key/info")[before:]]
    assert asked == ["sk-not-in-litellm", token_of(named), token_of(named)]
    assert client.find_key("", "nobody") is None
