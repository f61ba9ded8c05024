"""Issue 11, kinds 1, 3, 4 and 5 through the real command line: no .env text in any message,
no traceback from any setting, one exit code per cause, messages that say what is so."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.project import MASTER, REPO, Project, Standin, start_rotation

PASTED = "sk-PastedKeyQ7rvTzL2mK8pW4nX6bY1cD3eF5gHjJ"

ENV_TASKS = [["env.check"], ["env.check", "--json"], ["keys.create"], ["keys.list"],
             ["keys.rotate"], ["keys.revoke", "--name", "open-webui", "--yes"],
             ["stack.start"], ["stack.stop"], ["stack.restart"], ["stack.status"], ["stack.logs"]]

#: tasks that never reach Open WebUI here (no key for them to change), so a bad WEBUI_PORT does
#: not stop them; keys.create, env.check, stack.start and stack.restart refuse it
WEBUI_PORT_NOT_NEEDED = ("keys.list", "keys.rotate", "keys.revoke", "stack.stop", "stack.status",
                         "stack.logs")

# a secret where the parser meets it: each must be named by line, never quoted
BROKEN_WITH_SECRET = {
    "a key pasted on its own line": (f"VIRTUAL_KEY=\n{PASTED}\n", "has no '='"),
    "a key pasted as a name": (f"{PASTED}=x\n", "not a valid variable name"),
    "a key in an unparseable line": (f"VIRTUAL_KEY {PASTED} x=\n", "cannot be parsed"),
    "a key after an unclosed quote": (f'VIRTUAL_KEY="{PASTED}\n', "cannot be parsed"),
    "a port that is a key": (f"WEBUI_PORT={PASTED}\n", "WEBUI_PORT"),
    "a project name that is a key": (f"COMPOSE_PROJECT_NAME={PASTED}\n", "COMPOSE_PROJECT_NAME"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_WITH_SECRET))
@pytest.mark.parametrize("args", ENV_TASKS, ids=" ".join)
def test_no_message_quotes_env_text(project: Project, case: str, args: list[str]) -> None:
    extra, expected = BROKEN_WITH_SECRET[case]
    name = extra.split("=", 1)[0]
    kept = [ln for ln in project.read().splitlines() if not ln.startswith(f"{name}=")]
    project.env.write_text("\n".join(kept) + "\n" + extra)
    done = project.run(*args, env={"PATH": "/nonexistent"})
    output = done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert PASTED not in output and PASTED[3:] not in output and PASTED[-12:] not in output
    if name == "WEBUI_PORT" and args[0] in WEBUI_PORT_NOT_NEEDED:
        return  # only Open WebUI's URL is made from it: these go on (and fail for other reasons)
    assert done.returncode == 3, (args, output)
    assert expected in output
    assert "line" in output or name in output


# --------------------------------------------------------------------------- settings (kind 3)

SECONDS = ["abc", "5m", "-1", "0", "nan", "inf", ""]
BAD_SETTINGS: list[tuple[str, str, str]] = [
    *((f"INVOKE_GATEWAY_{n}", v, f"gateway.{n.lower()}") for n in ("TIMEOUT", "LOCK_TIMEOUT",
                                                                  "START_TIMEOUT")
      for v in SECONDS if v),
    ("INVOKE_GATEWAY_VIA", "ssh", "gateway.via"),
    ("INVOKE_GATEWAY_LITELLM_URL", "ftp://x", "gateway.litellm_url"),
    ("INVOKE_GATEWAY_LITELLM_URL", "http://127.0.0.1:4000/v1", "gateway.litellm_url"),
    ("INVOKE_GATEWAY_LITELLM_URL", "http://h:99999", "gateway.litellm_url"),
    ("INVOKE_GATEWAY_WEBUI_URL", "localhost:3000", "gateway.webui_url"),
    ("INVOKE_GATEWAY_PROJECT_NAME", "My Stack", "gateway.project_name"),
    ("INVOKE_GATEWAY_DEFAULT_KEY", "nope", "gateway.default_key"),
    ("INVOKE_GATEWAY_KEYS_OPEN-WEBUI_MAX_BUDGET", "lots", "budget"),
    ("INVOKE_GATEWAY_KEYS_OPEN-WEBUI_MAX_BUDGET", "-5", "budget"),
    ("INVOKE_GATEWAY_KEYS_OPEN-WEBUI_MODELS", "a b", "model"),
    ("INVOKE_GATEWAY_KEYS_OPEN-WEBUI_DURATION", "forever", "duration"),
    ("INVOKE_GATEWAY_KEYS_OPEN-WEBUI_ENV_VAR", "1BAD", "env_var"),
    ("LITELLM_PROXY_URL", "http://127.0.0.1:4000/v1", "LITELLM_PROXY_URL"),
    ("LITELLM_PROXY_URL", "localhost:4000", "LITELLM_PROXY_URL"),
]


@pytest.mark.parametrize(("variable", "value", "named"), BAD_SETTINGS)
@pytest.mark.parametrize("task", ["env.check", "keys.list", "stack.status"])
def test_a_bad_setting_is_exit_2_naming_it(project: Project, variable: str, value: str,
                                           named: str, task: str) -> None:
    done = project.run(task, env={variable: value, "PATH": "/nonexistent"})
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, (task, variable, value, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert named in done.stderr


BAD_YAML = {
    "not YAML": ("gateway: [\n", "not valid YAML"),
    "gateway not a map": ("gateway: 5\n", "wrong shape: a number where a map belongs"),
    "a key not a map": ("gateway:\n  keys:\n    x: 5\n", "gateway.keys.x"),
    "timeout a list": ("gateway:\n  timeout: [1]\n", "gateway.timeout"),
    "metadata not a map": ("gateway:\n  keys:\n    open-webui:\n      metadata: 3\n", "metadata"),
    "gate not yes/no": ("gateway:\n  keys:\n    open-webui:\n      gate: maybe\n", "gate"),
    "models a map": ("gateway:\n  keys:\n    open-webui:\n      models: {a: 1}\n", "wrong shape"),
    "models a map in a new key": ("gateway:\n  keys:\n    x:\n      env_var: X_KEY\n"
                                  "      models: {a: 1}\n", "gateway.keys.x.models"),
    "project_dir a list": ("gateway:\n  project_dir: [1]\n", "gateway.project_dir"),
}


@pytest.mark.parametrize("case", sorted(BAD_YAML))
def test_a_bad_invoke_yaml_is_exit_2_naming_it(project: Project, case: str) -> None:
    text, named = BAD_YAML[case]
    config = project.dir / "custom.yaml"
    config.write_text(text)
    done = project.run("-f", str(config), "env.check")
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert named in done.stderr


BAD_FLAGS = [
    (["stack.start", "--timeout", "abc"], "--timeout"),
    (["stack.start", "--timeout", "5m"], "--timeout"),
    (["stack.start", "--timeout", "0"], "--timeout"),
    (["stack.restart", "--timeout", "-3"], "--timeout"),
    (["stack.logs", "--tail", "x"], "--tail"),
    (["stack.logs", "--tail", "-1"], "--tail"),
    (["stack.logs", "--service", "web"], "unknown service"),
    (["stack.restart", "--service", "web"], "unknown service"),
    (["keys.create", "--wait", "abc"], "--wait"),
    (["keys.list", "--wait", "-1"], "--wait"),
    (["keys.rotate", "--wait", "nan"], "--wait"),
    (["keys.create", "--duration", "forever"], "duration"),
    (["keys.rotate", "--grace", "1 hour"], "duration"),
    (["keys.create", "--max-budget", "lots"], "budget"),
    (["keys.create", "--max-budget", "-5"], "budget"),
    (["keys.create", "--models", "a,,b"], "model"),
    (["keys.create", "--alias", " "], "--alias"),
    (["keys.create", "--name", "nope"], "unknown key name"),
    (["keys.list", "--via", "ssh"], "--via"),
    (["keys.list", "--url", "localhost:4000"], "--url"),
    (["keys.list", "--url", "http://127.0.0.1:4000/v1"], "use http://127.0.0.1:4000"),
    (["keys.revoke", "--alias", "x", "--key", "abcdef12"], "exactly one"),
    (["keys.revoke", "--name", "open-webui", "--alias", "x"], "exactly one"),
    (["keys.rotate", "--all", "--name", "open-webui"], "--all"),
]


@pytest.mark.parametrize(("args", "named"), BAD_FLAGS, ids=lambda a: " ".join(a) if
                         isinstance(a, list) else a)
def test_a_bad_flag_is_exit_2_naming_it(project: Project, args: list[str], named: str) -> None:
    done = project.run(*args, env={"PATH": "/nonexistent"})
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, (args, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert named in done.stderr


@pytest.mark.parametrize(("data", "named"), [
    (b"\xff\xfe not utf-8\n", "not UTF-8"),
    (b"", "must start with 'sk-'"),
    (b"not-a-key\n", "must start with 'sk-'"),
])
def test_bad_stdin_is_exit_2(project: Project, data: bytes, named: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "keys.revoke", "--key", "-", "--yes"],
        cwd=project.dir, env=project.environ(), input=data, capture_output=True, timeout=60)
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr
    assert done.returncode == 2, stderr
    assert named in stderr


def test_unknown_flag_is_invokes_exit_1_as_documented(project: Project) -> None:
    done = project.run("keys.list", "--nope")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    readme = (REPO / "README.md").read_text()
    assert "an unknown task or flag" in readme


def test_stdout_closed_is_quiet(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "invoke", "-r", str(REPO), "keys.list"], cwd=project.dir,
            env=project.environ(), stdout=write, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            timeout=60, text=True)
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 141, done.stderr


def test_the_terminal_going_away_unwinds(project: Project, litellm: Standin) -> None:
    """SIGHUP (the terminal closed) in the middle of a rotation: rolled back, exit 130."""
    assert project.run("keys.create").returncode == 0
    key = project.value("VIRTUAL_KEY")
    proc = start_rotation(project, litellm, "/v1/models", "hang")
    proc.send_signal(signal.SIGHUP)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "the new key was deleted" in err
    assert project.value("VIRTUAL_KEY") == key and litellm.accepts(key)


# --------------------------------------------------------------------------- exit codes (kind 4)


def _docker_dir() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed here") if not os.environ.get("CI") else \
            pytest.fail("CI has docker")
    return str(Path(docker).resolve().parent)


def _no_compose_env(tmp_path: Path) -> dict[str, str]:
    """The real docker CLI with no Compose: an empty plugin folder, no docker-compose on PATH."""
    config = tmp_path / "docker-config"
    config.mkdir(exist_ok=True)
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    link = folder / "docker"
    if not link.exists():
        link.symlink_to(shutil.which("docker") or "docker")
    return {"DOCKER_CONFIG": str(config), "PATH": str(folder)}


DOCKER_CAUSES = {
    "docker missing": lambda tmp: {"PATH": "/nonexistent"},
    "daemon unreachable": lambda tmp: {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    "bad context": lambda tmp: {"DOCKER_CONTEXT": "nope"},
    "compose missing": _no_compose_env,
}
STACK_TASKS = [["stack.start"], ["stack.stop"], ["stack.restart"], ["stack.status"],
               ["stack.status", "--json"], ["stack.logs"]]


@pytest.mark.parametrize("cause", sorted(DOCKER_CAUSES))
@pytest.mark.parametrize("args", STACK_TASKS, ids=" ".join)
def test_each_docker_cause_is_exit_10_in_every_stack_task(project: Project, tmp_path: Path,
                                                          cause: str, args: list[str]) -> None:
    _docker_dir()
    base = {k: v for k, v in project.environ().items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=project.dir,
        env={**base, **DOCKER_CAUSES[cause](tmp_path)}, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr
    assert done.returncode == 10, (cause, args, done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr


KEYS_TASKS = [["keys.create"], ["keys.list"], ["keys.rotate"],
              ["keys.revoke", "--name", "open-webui", "--yes"]]


def _litellm_down(project: Project, litellm: Standin) -> dict[str, str]:
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return {"LITELLM_PORT_URL": f"http://127.0.0.1:{port}"}


def _no_database(project: Project, litellm: Standin) -> dict[str, str]:
    with litellm.state.lock:
        litellm.state.db = False
    return {}


def _wrong_master(project: Project, litellm: Standin) -> dict[str, str]:
    from tasks.envstore import envfile

    envfile.update(project.env, {"LITELLM_MASTER_KEY": "sk-wrong-" + "w" * 30})
    return {}


LITELLM_CAUSES = {"LiteLLM down": (_litellm_down, 4), "no database": (_no_database, 6),
                  "wrong master key": (_wrong_master, 5)}


@pytest.mark.parametrize("cause", sorted(LITELLM_CAUSES))
@pytest.mark.parametrize("args", KEYS_TASKS, ids=" ".join)
def test_each_litellm_cause_has_one_exit_code_in_every_keys_task(
        project: Project, litellm: Standin, cause: str, args: list[str]) -> None:
    assert project.run("keys.create").returncode == 0
    make, code = LITELLM_CAUSES[cause]
    env = make(project, litellm)
    url = ["--url", env.pop("LITELLM_PORT_URL")] if "LITELLM_PORT_URL" in env else []
    done = project.run(*args, "--via", "host", *url, env=env)
    assert "Traceback" not in done.stderr
    assert done.returncode == code, (cause, args, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert MASTER not in done.stderr


def test_open_webui_down_is_exit_13() -> None:
    """Open WebUI not answering is Open WebUI's failure (13), not LiteLLM's (4)."""
    from tasks.base.errors import OpenWebUIError
    from tasks.clients.openwebui import OpenWebUI

    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with OpenWebUI(f"http://127.0.0.1:{port}", "a@b.c", "pw-123456789", timeout=2) as webui, \
            pytest.raises(OpenWebUIError) as err:
        webui.config()
    assert err.value.exit_code == 13 and "Open WebUI" in err.value.message


# --------------------------------------------------------------------------- messages (kind 5)


def test_revoke_block_says_what_is_true(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    done = project.run("keys.revoke", "--name", "open-webui", "--block", "--yes")
    assert done.returncode == 0, done.stderr
    assert "will refuse" not in done.stdout
    assert "still holds the blocked key" in done.stdout and "keys.create" in done.stdout


def test_a_url_override_is_said_once_on_stderr(project: Project, litellm: Standin) -> None:
    from tasks.envstore import envfile

    envfile.update(project.env, {"LITELLM_PORT": "4999"})
    done = project.run("keys.create")
    assert done.returncode == 0, done.stderr
    notes = [ln for ln in done.stderr.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and litellm.url in notes[0] and "localhost:4999" in notes[0]
    assert "LITELLM_PROXY_URL" in notes[0]
    assert not done.stderr.startswith("error")
    # no note when the URL is the one .env implies
    envfile.update(project.env, {"LITELLM_PORT": litellm.url.rsplit(":", 1)[1]})
    assert "note:" not in project.run("keys.list").stderr


# --------------------------------------------------------------------------- INVOKE_GATEWAY_*


def _user_config(project: Project, text: str) -> dict[str, str]:
    """A user's ~/.invoke.yaml (below INVOKE_* variables in Invoke's order, unlike a -f file)."""
    home = project.dir / "home"
    home.mkdir(exist_ok=True)
    (home / ".invoke.yaml").write_text(text)
    return {"HOME": str(home), "USERPROFILE": str(home)}


USER_KEYS = ("gateway:\n  timeout: 7\n  keys:\n    chat:\n      env_var: CHAT_KEY\n"
             "      models: [gpt-4o-mini]\n      max_budget: 5\n")


@pytest.mark.parametrize(("variable", "value", "line"), [
    ("INVOKE_GATEWAY_KEYS_CHAT_MODELS", "gpt-4o-mini,claude-haiku",
     "INVOKE_GATEWAY_KEYS_CHAT_MODELS cannot set gateway.keys.chat.models: it is a list in "
     "invoke.yaml (or a -f file), and an INVOKE_* variable holds text, never a list; set the "
     "list in invoke.yaml, or unset INVOKE_GATEWAY_KEYS_CHAT_MODELS"),
    ("INVOKE_GATEWAY_KEYS_CHAT_MAX_BUDGET", "lots",
     "INVOKE_GATEWAY_KEYS_CHAT_MAX_BUDGET must be a whole number: gateway.keys.chat.max_budget "
     "is one in invoke.yaml (or a -f file); give a whole number, or unset "
     "INVOKE_GATEWAY_KEYS_CHAT_MAX_BUDGET"),
    ("INVOKE_GATEWAY_TIMEOUT", "soon",
     "INVOKE_GATEWAY_TIMEOUT must be a whole number: gateway.timeout is one in invoke.yaml (or a "
     "-f file); give a whole number, or unset INVOKE_GATEWAY_TIMEOUT"),
    ("INVOKE_GATEWAY_TIMEOUT", "",
     "INVOKE_GATEWAY_TIMEOUT is set but empty: it would replace gateway.timeout from invoke.yaml "
     "with nothing; unset it (`unset INVOKE_GATEWAY_TIMEOUT`) or give it a value"),
    ("INVOKE_GATEWAY_KEYS_OPEN-WEBUI_MODELS", "a b",
     "gateway.keys.open-webui.models (invoke.yaml or INVOKE_GATEWAY_KEYS_OPEN-WEBUI_MODELS): bad "
     "model list 'a b': model names have no spaces"),
])
def test_a_bad_invoke_gateway_variable_names_itself(project: Project, litellm: Standin,
                                                    variable: str, value: str, line: str) -> None:
    """One line naming the variable, its setting and what it takes - never a Python type."""
    done = project.run("keys.list", env={**_user_config(project, USER_KEYS), variable: value})
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {line}\n"


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_invoke_gateway_litellm_url_is_refused_not_a_silent_override(
        project: Project, litellm: Standin, value: str) -> None:
    """Empty INVOKE_GATEWAY_LITELLM_URL used to replace invoke.yaml's gateway.litellm_url with
    nothing (so LITELLM_PROXY_URL or LITELLM_PORT was used instead, without a word)."""
    env = _user_config(project, f"gateway:\n  litellm_url: {litellm.url}\n")
    env["LITELLM_PROXY_URL"] = "http://127.0.0.1:9"
    done = project.run("keys.list", env={**env, "INVOKE_GATEWAY_LITELLM_URL": value})
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("error: INVOKE_GATEWAY_LITELLM_URL is set but empty: it would replace "
                           "gateway.litellm_url from invoke.yaml with nothing; unset it (`unset "
                           "INVOKE_GATEWAY_LITELLM_URL`) or give it a value\n")
    done = project.run("keys.list", env=env)
    assert done.returncode == 0, done.stderr
