"""Settings: one place for every fact, with a documented precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.base.errors import EnvFileError, UsageError
from tasks.config.settings import (
    DEFAULTS,
    PROJECT_DIR,
    load_settings,
    parse_budget,
    parse_duration,
    parse_models,
)


def config(**gateway: object) -> dict[str, object]:
    merged = {**DEFAULTS["gateway"], **gateway}
    return {"gateway": merged}


def test_defaults() -> None:
    s = load_settings(None, environ={})
    assert s.env_file == PROJECT_DIR / ".env"
    assert s.example_file == PROJECT_DIR / ".env.example"
    assert s.litellm_url == "http://localhost:4000"
    assert s.key(None).env_var == "VIRTUAL_KEY"
    assert s.key(None).team_id == "open-webui-team"
    assert s.key(None).alias == "Open WebUI Key"
    assert s.gate_key is not None and s.gate_key.name == "open-webui"


def test_env_file_precedence(tmp_path: Path) -> None:
    from_config = load_settings(config(env_file=str(tmp_path / "a.env")), environ={})
    assert from_config.env_file == tmp_path / "a.env"
    from_flag = load_settings(config(env_file=str(tmp_path / "a.env")),
                              env_file=str(tmp_path / "b.env"), environ={})
    assert from_flag.env_file == tmp_path / "b.env"


@pytest.mark.parametrize(
    ("flag", "conf", "environ", "env_values", "expected"),
    [
        (None, "", {}, {}, "http://localhost:4000"),
        (None, "", {}, {"LITELLM_PORT": "4100"}, "http://localhost:4100"),
        (None, "", {"LITELLM_PROXY_URL": "http://10.0.0.5:4000/"}, {"LITELLM_PORT": "4100"},
         "http://10.0.0.5:4000"),
        (None, "http://conf:1", {"LITELLM_PROXY_URL": "http://env:2"}, {}, "http://conf:1"),
        ("http://flag:3", "http://conf:1", {"LITELLM_PROXY_URL": "http://env:2"}, {},
         "http://flag:3"),
    ],
)
def test_url_precedence(flag: str | None, conf: str, environ: dict[str, str],
                        env_values: dict[str, str], expected: str) -> None:
    s = load_settings(config(litellm_url=conf), url=flag, environ=environ, env_values=env_values)
    assert s.litellm_url == expected


def test_master_key_precedence() -> None:
    env = {"LITELLM_MASTER_KEY": "sk-from-env", "LITELLM_PROXY_API_KEY": "sk-from-cli"}
    assert load_settings(None, environ=env, env_values={"LITELLM_MASTER_KEY": "sk-dotenv"}
                         ).master_key == "sk-dotenv"
    assert load_settings(None, environ=env, env_values={}).master_key == "sk-from-env"
    assert load_settings(None, environ={"LITELLM_PROXY_API_KEY": "sk-from-cli"}
                         ).master_key == "sk-from-cli"
    assert "sk-dotenv" not in repr(load_settings(None, env_values={"LITELLM_MASTER_KEY": "sk-dotenv"}))


@pytest.mark.parametrize("url", ["localhost:4000", "ftp://x", "http://", "http://h:99999"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(UsageError, match="bad LiteLLM URL"):
        load_settings(None, url=url, environ={})


@pytest.mark.parametrize(("given", "root"), [
    ("https://host/litellm", "https://host/litellm"),
    ("https://host/litellm/", "https://host/litellm"),
    ("http://10.0.0.5:8080/tools/litellm", "http://10.0.0.5:8080/tools/litellm"),
    ("http://h:4000/", "http://h:4000"),
])
def test_a_litellm_root_may_be_a_path(given: str, root: str) -> None:
    """LiteLLM behind a reverse proxy, started with SERVER_ROOT_PATH: every source takes it."""
    assert load_settings(None, url=given, environ={}).litellm_url == root
    assert load_settings(config(litellm_url=given), environ={}).litellm_url == root
    assert load_settings(None, environ={"LITELLM_PROXY_URL": given}).litellm_url == root


@pytest.mark.parametrize(("given", "root"), [
    ("http://h:4000/v1", "http://h:4000"),
    ("http://h:4000/v1/", "http://h:4000"),
    ("http://h:4000/ui", "http://h:4000"),
    ("http://h:4000/chat/completions", "http://h:4000"),
    ("https://host/litellm/v1/chat/completions", "https://host/litellm"),
    ("https://host/litellm/key/list", "https://host/litellm"),
    ("https://host/litellm?x=1", "https://host/litellm"),
])
def test_a_path_that_is_clearly_no_root_is_refused_naming_the_root(given: str, root: str) -> None:
    with pytest.raises(UsageError, match=f"must be its root, .*: use {root}$"):
        load_settings(None, url=given, environ={})


def test_open_webuis_url_is_still_a_root() -> None:
    with pytest.raises(UsageError, match="use http://h:3000$"):
        load_settings(config(webui_url="http://h:3000/chat"), environ={})


@pytest.mark.parametrize("port", ["abc", "0", "70000", "-1"])
def test_bad_port_in_env(port: str) -> None:
    with pytest.raises(EnvFileError, match="LITELLM_PORT"):
        load_settings(None, environ={}, env_values={"LITELLM_PORT": port})


@pytest.mark.parametrize("good", ["30s", "15m", "2h", "7d", "1w", "1mo", "365d"])
def test_durations(good: str) -> None:
    assert parse_duration(good) == good


@pytest.mark.parametrize("bad", ["0d", "7", "d", "1y", "1.5h", "-1d", "7 d", "forever"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(UsageError, match="bad duration"):
        parse_duration(bad)


def test_models() -> None:
    assert parse_models("a, b,c") == ("a", "b", "c")
    assert parse_models("") == ()
    for bad in ("a,,b", "a, ,b", "a b"):
        with pytest.raises(UsageError, match="bad model list"):
            parse_models(bad)


def test_budgets() -> None:
    assert parse_budget("7.5") == 7.5
    assert parse_budget(None) is None
    for bad in ("-1", "abc", "nan", "inf"):
        with pytest.raises(UsageError, match="bad budget"):
            parse_budget(bad)


def test_several_consumers_from_config() -> None:
    keys = {**DEFAULTS["gateway"]["keys"],
            "continue-dev": {"env_var": "CONTINUE_DEV_KEY", "alias": "Continue.dev Key",
                             "team_id": "continue-dev-team", "models": ["gpt-4o-mini"]}}
    s = load_settings(config(keys=keys), environ={})
    spec = s.key("continue-dev")
    assert (spec.env_var, spec.models, spec.gate) == ("CONTINUE_DEV_KEY", ("gpt-4o-mini",), False)
    with pytest.raises(UsageError, match="unknown key name 'nope'; configured: continue-dev, open-webui"):
        s.key("nope")


def test_two_keys_in_one_variable_is_refused() -> None:
    keys = {"a": {"env_var": "SAME"}, "b": {"env_var": "SAME"}}
    with pytest.raises(UsageError, match="same env_var"):
        load_settings(config(keys=keys), environ={})


def test_bad_timeouts() -> None:
    with pytest.raises(UsageError, match="gateway.timeout"):
        load_settings(config(timeout="soon"), environ={})
    with pytest.raises(UsageError, match="more than 0"):
        load_settings(config(timeout=0), environ={})
