"""An empty value never lifts a key's limit (issue: `M=; keys.create --force --models "$M"
--duration "$M" --max-budget "$M"` made a key for all models, never expiring, without budget).

From a flag, from invoke.yaml / a -f file, from INVOKE_GATEWAY_*: an empty or blank value of
models, duration or max_budget is exit 2 with one line naming it, and LiteLLM is never asked.
A budget of 0 is refused too (it used to mean "no budget")."""

from __future__ import annotations

import json

import pytest

from tests.support.project import Project, Standin

LIMITED = {"gateway": {"keys": {"open-webui": {
    "models": ["gpt-4o-mini"], "duration": "7d", "max_budget": 5}}}}


def limited_config(project: Project, **override: object) -> str:
    config = json.loads(json.dumps(LIMITED))
    config["gateway"]["keys"]["open-webui"].update(override)
    path = project.dir / "limits.json"
    path.write_text(json.dumps(config))
    return str(path)


def refused(done: object, *words: str) -> None:
    err = str(getattr(done, "stderr", "")).strip()
    assert getattr(done, "returncode", None) == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    for word in words:
        assert word in err, err


def test_the_issues_cron_line_is_refused(project: Project, litellm: Standin) -> None:
    config = limited_config(project)
    done = project.run("-f", config, "keys.create", "--force", "--models", "", "--duration", "",
                       "--max-budget", "")
    refused(done, "empty value", "--")
    assert litellm.requests("/key/generate") == []


@pytest.mark.parametrize("flag", ["--models", "--duration", "--max-budget"])
@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_each_blank_limit_flag_is_refused(project: Project, litellm: Standin, flag: str, value: str) -> None:
    done = project.run("-f", limited_config(project), "keys.create", "--force", flag, value)
    refused(done, flag, "empty value")
    assert litellm.requests("/key/generate") == []


@pytest.mark.parametrize(("setting", "value"), [
    ("models", ""), ("models", []), ("models", "  "), ("duration", ""), ("duration", " "),
    ("max_budget", ""),
])
def test_a_blank_limit_in_config_is_refused(project: Project, litellm: Standin, setting: str,
                                            value: object) -> None:
    done = project.run("-f", limited_config(project, **{setting: value}), "keys.create")
    refused(done, f"gateway.keys.open-webui.{setting}", "empty")
    assert litellm.requests("/key/generate") == []


@pytest.mark.parametrize("setting", ["MODELS", "MAX_BUDGET", "DURATION"])
def test_a_blank_limit_from_the_environment_is_refused(project: Project, litellm: Standin,
                                                       setting: str) -> None:
    """Invoke maps INVOKE_GATEWAY_KEYS_<NAME>_<SETTING> onto a key whose name has no dash. An
    empty one is refused (exit 2) naming it - over a list (Invoke cannot cast one), over a
    number (Invoke's own cast was a traceback) and over text alike: an empty variable would
    replace invoke.yaml's setting with nothing, so it is never taken as "unset"."""
    config = project.dir / "chat.json"
    config.write_text(json.dumps({"gateway": {"keys": {"chat": {
        "env_var": "CHAT_KEY", "alias": "Chat Key", "models": ["gpt-4o-mini"], "duration": "7d",
        "max_budget": 5}}}}))
    variable = f"INVOKE_GATEWAY_KEYS_CHAT_{setting}"
    done = project.run("-f", str(config), "keys.create", "--name", "chat", env={variable: ""})
    refused(done, f"{variable} is set but empty", f"gateway.keys.chat.{setting.lower()}",
            f"unset {variable}")
    assert litellm.requests("/key/generate") == []
    done = project.run("-f", str(config), "keys.create", "--name", "chat")
    assert done.returncode == 0, done.stderr
    [record] = litellm.active("Chat Key")
    assert record["models"] == ["gpt-4o-mini"] and record["max_budget"] == 5
    assert record["expires"] is not None and record["metadata"]["duration"] == "7d"


@pytest.mark.parametrize("budget", ["0", "0.0", "-0"])
def test_a_zero_budget_is_refused_not_taken_as_none(project: Project, litellm: Standin, budget: str) -> None:
    done = project.run("keys.create", "--max-budget", budget)
    refused(done, "positive")
    assert litellm.requests("/key/generate") == []


def test_the_configured_limits_hold_when_no_flag_is_given(project: Project, litellm: Standin) -> None:
    done = project.run("-f", limited_config(project), "keys.create")
    assert done.returncode == 0, done.stderr
    [record] = litellm.active()
    assert record["models"] == ["gpt-4o-mini"] and record["max_budget"] == 5
    assert record["expires"] is not None
