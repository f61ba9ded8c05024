"""hand_over: a key written to other applications' .env files (Continue.dev's ~/.continue/.env),
and unknown settings under ``gateway`` refused - against the LiteLLM stand-in, through the CLI.

Also run under the Windows CPython (tests/real/test_windows.py): there ``%USERPROFILE%\\.continue\\.env``
is written owner-only (its DACL read back through the Windows API by ``perms.is_private``).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import filelock
import pytest

from tasks.base.errors import UsageError
from tasks.config.handover import expand_path, parse_hand_over
from tasks.config.settings import load_settings
from tasks.envstore import envfile, perms
from tasks.virtualkeys import continuedev
from tests.support.project import WINDOWS, Project, Standin, outlive_litellm

ALIAS = "Continue.dev Key"


def config(project: Project, hand_over: Any, **extra: Any) -> str:
    """An ``invoke -f`` file declaring ``continue-dev`` (CONTINUE_DEV_KEY) with ``hand_over``."""
    path = project.dir / "invoke.json"
    key = {"env_var": "CONTINUE_DEV_KEY", "alias": ALIAS, "team_id": "continue-dev-team",
           "models": ["claude-haiku"], "hand_over": hand_over, **extra}
    path.write_text(json.dumps({"gateway": {"keys": {"continue-dev": key}}}))
    return str(path)


def consumer_file(project: Project) -> Path:
    return project.dir / "home" / ".continue" / ".env"


def absolute(project: Project) -> str:
    return config(project, [{"dotenv": str(consumer_file(project)), "var": "LITELLM_API_KEY"}])


def held(path: Path) -> str:
    return envfile.load(path).get("LITELLM_API_KEY")


def journal(project: Project) -> Path:
    return project.dir / ".env.keys-journal.json"


def run_ok(project: Project, *args: str, **kwargs: Any) -> Any:
    done = project.run(*args, **kwargs)
    assert done.returncode == 0, done.stderr
    return done


# --------------------------------------------------------------------------- create, rotate


def test_create_writes_the_file_and_its_folder_owner_only(project: Project, litellm: Standin) -> None:
    cfg = absolute(project)
    done = run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    path = consumer_file(project)
    key = project.value("CONTINUE_DEV_KEY")
    assert held(path) == key and litellm.accepts(key)
    assert f"wrote the key to LITELLM_API_KEY in {path}" in done.stdout
    assert key not in done.stdout + done.stderr
    assert perms.is_private(path)
    if not WINDOWS:
        assert perms.mode_of(path.parent) & 0o777 == 0o700


def test_rotation_keeps_the_files_other_lines_and_comments(project: Project, litellm: Standin) -> None:
    cfg = absolute(project)
    path = consumer_file(project)
    path.parent.mkdir(parents=True)
    original = "# Continue.dev secrets\nOTHER_SECRET='x y'  # mine\n\nLITELLM_API_KEY=\n# end\n"
    path.write_text(original)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    old = project.value("CONTINUE_DEV_KEY")
    assert path.read_text() == original.replace("LITELLM_API_KEY=", f"LITELLM_API_KEY={old}")
    run_ok(project, "-f", cfg, "keys.rotate", "--name", "continue-dev")
    new = project.value("CONTINUE_DEV_KEY")
    assert new != old and held(path) == new and litellm.accepts(new)
    assert not litellm.accepts(old)
    assert path.read_text() == original.replace("LITELLM_API_KEY=", f"LITELLM_API_KEY={new}")
    assert perms.is_private(path)


def test_create_hands_an_existing_key_to_a_new_consumer(project: Project, litellm: Standin) -> None:
    cfg = config(project, [])
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    key = project.value("CONTINUE_DEV_KEY")
    cfg = absolute(project)
    done = run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    assert "already holds an active key" in done.stdout
    assert held(consumer_file(project)) == key == project.value("CONTINUE_DEV_KEY")


def test_tilde_is_the_home_folder(project: Project, litellm: Standin) -> None:
    home = project.dir / "home"
    cfg = config(project, [{"dotenv": "~/.continue/.env", "var": "LITELLM_API_KEY"}])
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev",
           env={"HOME": str(home), "USERPROFILE": str(home)})
    assert held(consumer_file(project)) == project.value("CONTINUE_DEV_KEY")


def test_userprofile_is_expanded_and_written_owner_only(project: Project, litellm: Standin) -> None:
    """``%USERPROFILE%\\.continue\\.env``, as a Windows user writes it; on Windows also the
    DACL read back (perms.is_private: owner-only, protected)."""
    home = project.dir / "home"
    cfg = config(project, [{"dotenv": "%USERPROFILE%\\.continue\\.env", "var": "LITELLM_API_KEY"}])
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev",
           env={"USERPROFILE": str(home)})
    path = home / ".continue" / ".env"
    assert held(path) == project.value("CONTINUE_DEV_KEY")
    assert perms.is_private(path)
    for leftover in path.parent.iterdir():
        assert leftover.name in (".env", ".env.lock"), leftover


def test_two_keys_cannot_hand_over_to_one_variable() -> None:
    entry = [{"dotenv": "/x/.env", "var": "K"}]
    with pytest.raises(UsageError, match="'open-webui' and 'c' both hand over to K in /x/.env"):
        load_settings({"gateway": {"keys": {
            "open-webui": {"env_var": "A", "hand_over": entry},
            "c": {"env_var": "B", "hand_over": entry}}}}, environ={})


def test_another_spelling_of_one_file_is_the_same_file(tmp_path: Path) -> None:
    """`~/.continue/.env` and `~/.continue/../.continue/.env` (or a symlink to it) are one file:
    two keys writing one variable there would overwrite each other at every rotation."""
    (tmp_path / ".continue").mkdir()
    spellings = [str(tmp_path / ".continue" / ".." / ".continue" / ".env")]
    if sys.platform != "win32":  # symlinks need a privilege on Windows
        (tmp_path / "link").symlink_to(tmp_path / ".continue")
        spellings.append(str(tmp_path / "link" / ".env"))
    for other in spellings:
        with pytest.raises(UsageError, match="'open-webui' and 'c' both hand over to K"):
            load_settings({"gateway": {"keys": {
                "open-webui": {"env_var": "A", "hand_over": [
                    {"dotenv": str(tmp_path / ".continue" / ".env"), "var": "K"}]},
                "c": {"env_var": "B", "hand_over": [{"dotenv": other, "var": "K"}]}}}}, environ={})


@pytest.mark.parametrize("written", [".env", "sub/../.env"])
def test_a_key_is_never_handed_to_the_stacks_own_env(project: Project, litellm: Standin,
                                                     written: str) -> None:
    """`dotenv: .env, var: LITELLM_MASTER_KEY` would put the virtual key over the master key."""
    before = project.env.read_bytes()
    cfg = config(project, [{"dotenv": str(project.dir / written), "var": "LITELLM_MASTER_KEY"}])
    done = project.run("-f", cfg, "keys.create", "--name", "continue-dev")
    assert done.returncode == 2, done.stderr
    assert "is the stack's own .env" in done.stderr and done.stderr.count("\n") == 1
    assert project.env.read_bytes() == before
    assert not litellm.keys(include_deleted=True)


def test_expansion_rules(tmp_path: Path) -> None:
    environ = {"USERPROFILE": str(tmp_path), "APPS": str(tmp_path / "apps")}
    assert expand_path("%USERPROFILE%\\.continue\\.env", "x", environ) == \
        tmp_path / ".continue" / ".env"
    assert expand_path("${APPS}/a/.env", "x", environ) == tmp_path / "apps" / "a" / ".env"
    assert expand_path("$APPS/.env", "x", environ) == tmp_path / "apps" / ".env"
    with pytest.raises(UsageError, match="names the variable NOPE, which is not set"):
        expand_path("%NOPE%/.env", "gateway.keys.c.hand_over[0].dotenv", environ)
    # USERPROFILE on Linux, HOME on Windows: the home folder stands in
    assert expand_path("%USERPROFILE%/x", "x", {}) == Path.home() / "x"


@pytest.mark.parametrize(("raw", "message"), [
    ("~/.continue/.env", "takes a list"),
    ([{"var": "K"}], r"hand_over\[0\].dotenv takes the path"),
    ([{"dotenv": "a/.env", "var": "1BAD"}], r"hand_over\[0\].var takes a variable name"),
    ([{"dotenv": "a/.env", "var": "K"}, {"dotenv": "a/.env", "var": "K"}], "twice"),
])
def test_malformed_hand_over_is_exit_2(raw: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_hand_over("gateway.keys.c", raw)


# --------------------------------------------------------------------------- failures and kills


def test_an_unwritable_consumer_stops_the_rotation_before_anything(
        project: Project, litellm: Standin) -> None:
    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    old = project.value("CONTINUE_DEV_KEY")
    before = project.env.read_bytes()
    made = len(litellm.keys(include_deleted=True))
    # the file's folder cannot be made: a file is in its way (as root too, and on Windows)
    blocker = project.dir / "blocked"
    blocker.write_text("not a folder\n")
    cfg = config(project, [{"dotenv": str(consumer_file(project)), "var": "LITELLM_API_KEY"},
                           {"dotenv": str(blocker / ".env"), "var": "LITELLM_API_KEY"}])
    done = project.run("-f", cfg, "keys.rotate", "--name", "continue-dev")
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and str(blocker / ".env") in done.stderr
    assert "the old key are as they were" in done.stderr
    assert project.env.read_bytes() == before
    assert litellm.accepts(old) and held(consumer_file(project)) == old
    assert len(litellm.keys(include_deleted=True)) == made, "no key was made"
    assert not journal(project).exists()


def test_an_immutable_consumer_file_stops_the_rotation_before_anything(
        project: Project, litellm: Standin, file_attribute: Any) -> None:
    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    old, before = project.value("CONTINUE_DEV_KEY"), project.env.read_bytes()
    made = len(litellm.keys(include_deleted=True))
    file = consumer_file(project)
    file_attribute(file, "+i")
    done = project.run("-f", cfg, "keys.rotate", "--name", "continue-dev")
    assert done.returncode == 3, done.stderr
    assert "is immutable" in done.stderr and "chattr -i" in done.stderr
    assert "the old key are as they were" in done.stderr
    assert project.env.read_bytes() == before and held(file) == old and litellm.accepts(old)
    assert len(litellm.keys(include_deleted=True)) == made, "no key was made"


STEPS = [
    ("/key/info", "hang", False),
    ("/team/info", "hang", False),
    ("/key/generate", "hang", False),
    ("/key/generate", "hang_after", False),
    ("/v1/models", "hang", False),
    ("/key/delete", "hang", True),  # switched and handed over, old key not yet deleted
    ("/key/update", "hang", True),
]


def _start(project: Project, litellm: Standin, cfg: str, path: str, mode: str) -> Any:
    skip = 1 if path == "/v1/models" else 0
    seen, worked = len(litellm.requests(path)) + skip, litellm.worked(path) + skip
    litellm.fault(path, mode=mode, delay=20, skip=skip)
    proc = project.start("-f", cfg, "keys.rotate", "--name", "continue-dev")
    deadline = time.monotonic() + 60
    while len(litellm.requests(path)) <= seen:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the rotation never reached the step"
        time.sleep(0.02)
    if mode == "hang_after":
        litellm.wait_worked(path, worked)  # the work it will never answer is done
    return proc


def _assert_repaired(project: Project, litellm: Standin, cfg: str) -> str:
    done = run_ok(project, "-f", cfg, "keys.list", "--json")
    key = project.value("CONTINUE_DEV_KEY")
    assert litellm.accepts(key) and held(consumer_file(project)) == key
    assert [k["key_alias"] for k in litellm.active(ALIAS)] == [ALIAS]
    assert not journal(project).exists()
    [state] = json.loads(done.stdout)["hand_over"]
    assert state["state"] == "current" and state["holds_current_key"] is True
    return key


@pytest.mark.parametrize(("path", "mode", "switched"), STEPS)
def test_a_kill_at_each_step_leaves_the_consumer_a_working_key(
        project: Project, litellm: Standin, path: str, mode: str, switched: bool) -> None:
    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    old = project.value("CONTINUE_DEV_KEY")
    proc = _start(project, litellm, cfg, path, mode)
    proc.kill()
    proc.communicate(timeout=60)
    there = held(consumer_file(project))
    assert litellm.accepts(there), "right after the kill the consumer holds a working key"
    assert (there != old) == switched
    if (path, mode) == ("/key/generate", "hang"):  # no answer, no key (yet): the journal waits
        assert "LiteLLM may still make it" in run_ok(project, "-f", cfg, "keys.list").stdout
        outlive_litellm(project)  # until LiteLLM's request timeout has passed
    assert (_assert_repaired(project, litellm, cfg) != old) == switched


def test_a_kill_during_the_hand_over_is_finished_by_the_next_task(
        project: Project, litellm: Standin) -> None:
    """Frozen between the switch and the file's write (its lock held here), then killed: the
    consumer keeps the old key, which still works; the next keys task hands over the new one,
    then retires the old one."""
    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    old = project.value("CONTINUE_DEV_KEY")
    path = consumer_file(project)
    with filelock.FileLock(envfile.lock_path_for(path)):
        proc = project.start("-f", cfg, "keys.rotate", "--name", "continue-dev")
        deadline = time.monotonic() + 60
        while project.value("CONTINUE_DEV_KEY") == old:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the rotation never switched"
            time.sleep(0.02)
        proc.kill()
        proc.communicate(timeout=60)
    assert held(path) == old and litellm.accepts(old), "the old key must work until handed over"
    new = project.value("CONTINUE_DEV_KEY")
    done = run_ok(project, "-f", cfg, "keys.list")
    assert "finished an interrupted rotation of 'continue-dev'" in done.stdout
    assert _assert_repaired(project, litellm, cfg) == new
    assert not litellm.accepts(old)


def test_list_says_which_consumer_holds_the_current_key(project: Project, litellm: Standin) -> None:
    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    path = consumer_file(project)
    assert "holds the current key" in run_ok(project, "-f", cfg, "keys.list").stdout
    envfile.update(path, {"LITELLM_API_KEY": "sk-someone-elses"})
    done = run_ok(project, "-f", cfg, "keys.list", "--json")
    [state] = json.loads(done.stdout)["hand_over"]
    assert state == {"key": "continue-dev", "dotenv": str(path), "var": "LITELLM_API_KEY",
                     "state": "stale", "holds_current_key": False, "detail": ""}
    assert "holds another key" in run_ok(project, "-f", cfg, "keys.list").stdout


# --------------------------------------------------------------------------- Continue's config


def test_continue_config_prints_the_models_with_the_secret_not_the_key(
        project: Project, litellm: Standin) -> None:
    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    done = run_ok(project, "-f", cfg, "keys.continue-config")
    key = project.value("CONTINUE_DEV_KEY")
    assert key not in done.stdout
    from invoke.vendor import yaml

    data = yaml.safe_load(done.stdout)
    assert data["schema"] == "v1"
    assert data["models"] == [{
        "name": "claude-haiku (LiteLLM)", "provider": "openai", "model": "claude-haiku",
        "apiBase": f"{litellm.url}/v1", "apiKey": "${{ secrets.LITELLM_API_KEY }}",
        "roles": ["chat", "edit", "apply"]}]


def test_continue_configs_yaml_on_stdout_is_the_yaml_alone(project: Project, litellm: Standin) -> None:
    """A recovery's note (here: an interrupted master-key rotation rolled back) went to stdout
    ahead of the YAML, where a redirect into config.yaml read it as a mapping entry."""
    import hashlib

    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    master = project.value("LITELLM_MASTER_KEY")
    (project.dir / ".env.master-journal.json").write_text(json.dumps({
        "old_sha256": hashlib.sha256(master.encode()).hexdigest(), "new_sha256": "0" * 64,
        "started_at": "2026-12-04T00:00:00+00:00", "restart": False}))
    done = run_ok(project, "-f", cfg, "keys.continue-config")
    assert "rolled back an interrupted master-key rotation" in done.stderr
    assert done.stdout.startswith("name:") and "rolled back" not in done.stdout
    from invoke.vendor import yaml

    assert set(yaml.safe_load(done.stdout)) == {"name", "version", "schema", "models"}


def test_continue_config_write_merges_and_keeps_the_users_entries(
        project: Project, litellm: Standin) -> None:
    from invoke.vendor import yaml

    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    target = consumer_file(project).parent / "config.yaml"
    mine = {"name": "mine", "provider": "ollama", "model": "llama3"}
    stale = {"name": "gone (LiteLLM)", "provider": "openai", "model": "gone",
             "apiBase": f"{litellm.url}/v1", "apiKey": "${{ secrets.LITELLM_API_KEY }}"}
    target.write_text(yaml.safe_dump({"name": "My Config", "version": "0.0.1", "schema": "v1",
                                      "models": [mine, stale], "context": [{"provider": "code"}]},
                                     sort_keys=False))
    done = run_ok(project, "-f", cfg, "keys.continue-config", "--write")
    assert f"wrote 1 model(s) to {target}" in done.stdout
    assert "replaced 1 written before, kept 1 other" in done.stdout
    data = yaml.safe_load(target.read_text())
    assert list(data) == ["name", "version", "schema", "models", "context"]
    assert data["name"] == "My Config" and data["context"] == [{"provider": "code"}]
    assert data["models"][0] == mine and data["models"][1]["model"] == "claude-haiku"
    assert project.value("CONTINUE_DEV_KEY") not in target.read_text()
    # again: the same file (ours replaced, not added twice)
    run_ok(project, "-f", cfg, "keys.continue-config", "--write", str(target))
    assert yaml.safe_load(target.read_text()) == data


def test_continue_config_keeps_the_users_comments(project: Project, litellm: Standin) -> None:
    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    target = project.dir / "config.yaml"
    original = "# my settings\nname: mine  # really\nmodels: []\n"
    target.write_text(original)
    run_ok(project, "-f", cfg, "keys.continue-config", "--write", str(target))
    text = target.read_text()
    assert text.startswith("# my settings\nname: mine  # really\nmodels: \n- name: claude-haiku")


#: the review's inputs: values a YAML 1.1 load-and-dump changed (1.10 -> 1.1, no -> false,
#: 0123 -> 83, 1:30 -> 90, a key on: -> true), and the quoting, comments and layout around them
USER_TEXT = [
    "version: 1.10\n",
    "allowAnonymousTelemetry: no\n",
    "pin: 0123\n",
    "timeout: 1:30\n",
    "on: save\n",
    "quoted: 'single'  # a comment\nother: \"double\"\n",
    "text: |\n  kept\n    as is\n\n",
]


@pytest.mark.parametrize("user", USER_TEXT)
@pytest.mark.parametrize("models", ["", "models:\n  - name: mine\n    model: llama3\n",
                                    "models:\n", "models: []\n"])
def test_merge_keeps_the_users_text_byte_for_byte(user: str, models: str) -> None:
    from invoke.vendor import yaml

    block = continuedev.models_block(["m"], "http://localhost:4000", "K")
    existing = "name: Mine\n" + user + models
    merged = continuedev.merge(existing, block, "http://localhost:4000", yaml, "c")
    ours = merged.text.index("- name: m (LiteLLM)")
    ours = merged.text.rfind("\n", 0, ours) + 1
    # the user's text up to our entries is theirs as it was; after them, nothing of ours
    assert merged.text[:ours] == existing.replace("models: []", "models: ") + (
        "" if models else "models:\n")
    assert merged.text[ours:].startswith(" " * (2 if "mine" in models else 0) + "- name: m (LiteLLM)")
    assert yaml.safe_load(merged.text)["models"][-1]["apiKey"] == "${{ secrets.K }}"


def test_write_keeps_the_quoted_values_through_the_cli(project: Project, litellm: Standin) -> None:
    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    target = project.dir / "config.yaml"
    original = ("name: Mine\r\nversion: 1.10\r\nflag: no\r\nmode: 0123\r\ntime: 1:30\r\n"
                "on: x\r\nmodels:\r\n  - name: mine  # mine\r\n    provider: ollama\r\n"
                "    model: m\r\n")
    target.write_bytes(original.encode())
    run_ok(project, "-f", cfg, "keys.continue-config", "--write", str(target))
    data = target.read_bytes().decode()
    assert data.startswith(original) and data[len(original):].startswith(
        "  - name: claude-haiku (LiteLLM)\r\n")
    assert "\n" not in data.replace("\r\n", "")
    run_ok(project, "-f", cfg, "keys.continue-config", "--write", str(target))
    assert target.read_bytes().decode() == data  # ours replaced, nothing added twice


def test_write_replaces_only_our_entries_and_says_what_it_kept(
        project: Project, litellm: Standin) -> None:
    """A model of the user's own at the same apiBase is kept (it is not named '<model>
    (LiteLLM)'), and said; an entry we wrote is replaced where it was."""
    from invoke.vendor import yaml

    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    target = project.dir / "config.yaml"
    base = f"{litellm.url}/v1"
    original = (f"name: Mine\nmodels:\n- name: My GPT\n  provider: openai\n  model: gpt-4o\n"
                f"  apiBase: {base}\n  apiKey: ${{{{ secrets.MINE }}}}\n"
                f"- name: old (LiteLLM)\n  provider: openai\n  model: old\n  apiBase: {base}\n"
                f"  apiKey: ${{{{ secrets.LITELLM_API_KEY }}}}\n  roles: [chat]\n"
                "- name: Local\n  provider: ollama\n  model: llama3\n")
    target.write_text(original)
    done = run_ok(project, "-f", cfg, "keys.continue-config", "--write", str(target))
    names = [m["name"] for m in yaml.safe_load(target.read_text())["models"]]
    assert names == ["My GPT", "claude-haiku (LiteLLM)", "Local"]
    assert "replaced 1 written before, kept 2 other model(s)" in done.stdout
    assert ("kept your own model(s) at this LiteLLM as they were: 'My GPT' (only entries named "
            "'<model> (LiteLLM)' are ours to replace)") in done.stdout
    assert target.read_text().startswith(original[:original.index("- name: old")])
    assert target.read_text().endswith("- name: Local\n  provider: ollama\n  model: llama3\n")
    data = run_ok(project, "-f", cfg, "keys.continue-config", "--write", str(target), "--json")
    assert json.loads(data.stdout)["kept_at_this_litellm"] == ["My GPT"]


@pytest.mark.parametrize(("text", "said"), [
    ("name: a\nmodels: [{name: x}]\n", "flow style ([...])"),
    ("{name: a}\n", "one flow map"),
    ("- a\n", "not a YAML map"),
    ("name: [\n", "not valid YAML"),
    ("name: a\nmodels:\n  - &o\n    name: m (LiteLLM)\n    provider: openai\n    model: m\n"
     "    apiBase: http://localhost:4000/v1\n    apiKey: ${{ secrets.K }}\nother: *o\n",
     "without changing its other settings"),
])
def test_merge_refuses_what_it_cannot_edit_alone(text: str, said: str) -> None:
    from invoke.vendor import yaml

    block = continuedev.models_block(["m"], "http://localhost:4000", "K")
    with pytest.raises(UsageError, match=re.escape(said)):
        continuedev.merge(text, block, "http://localhost:4000", yaml, "c")


def test_write_to_a_folder_path_writes_config_yaml_in_it_owner_only(
        project: Project, litellm: Standin) -> None:
    """`--write DIR/` (a folder that does not exist yet) is that folder's config.yaml, not a
    file named DIR; every folder made for it is 0700 (the parents too, not the umask's 0755)."""
    cfg = absolute(project)
    run_ok(project, "-f", cfg, "keys.create", "--name", "continue-dev")
    folder = project.dir / "new" / "deeper" / "continue"
    done = run_ok(project, "-f", cfg, "keys.continue-config", "--write", f"{folder}/")
    assert (folder / "config.yaml").is_file() and f"to {folder / 'config.yaml'}" in done.stdout
    assert perms.is_private(folder / "config.yaml")
    if not WINDOWS:
        for made in (project.dir / "new", project.dir / "new" / "deeper", folder):
            assert perms.mode_of(made) & 0o777 == 0o700, made
    # an existing folder, without the slash: the same file
    run_ok(project, "-f", cfg, "keys.continue-config", "--write", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml"]


def test_make_folder_makes_every_missing_parent_0700(tmp_path: Path) -> None:
    """Every missing parent is made (on POSIX 0700; a Windows folder inherits its parent's
    access list, so there only the folders are checked) and a second call changes nothing."""
    from tasks.virtualkeys.dotenvfiles import make_folder

    make_folder(tmp_path / "a" / "b" / "c")
    make_folder(tmp_path / "a" / "b" / "c")
    for made in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert made.is_dir(), made
        if not WINDOWS:
            assert perms.mode_of(made) & 0o777 == 0o700, made


def test_continue_config_names_the_variable_litellm_refused(project: Project,
                                                            litellm: Standin) -> None:
    cfg = absolute(project)
    envfile.update(project.env, {"CONTINUE_DEV_KEY": "sk-not-a-key-" + "x" * 20})
    done = project.run("-f", cfg, "keys.continue-config")
    assert done.returncode == 8, done.stderr
    assert done.stderr == (f"error: LiteLLM at {litellm.url} refused the key in CONTINUE_DEV_KEY "
                           "(HTTP 401: Authentication Error, Invalid API key provided.); run "
                           "`invoke keys.create --name continue-dev` to replace it\n")


def test_unreachable_advice_names_the_keys_own_variable(tmp_path: Path) -> None:
    """Making a key by hand when LiteLLM cannot be reached: put it where that key lives."""
    from tasks.base.errors import ProxyUnreachableError
    from tasks.gateway import connect

    home = tmp_path / "home" / ".continue" / ".env"
    from tasks.config.settings import DEFAULTS

    settings = load_settings({"gateway": {"litellm_url": "http://127.0.0.1:9", "timeout": 2,
                                          "keys": {**DEFAULTS["gateway"]["keys"], "continue-dev": {
                                              "env_var": "CONTINUE_DEV_KEY",
                                              "hand_over": [{"dotenv": str(home), "var": "K"}]}}}},
                             env_values={"LITELLM_MASTER_KEY": "sk-master"}, environ={})

    class NoContainers:
        def running(self, service: str) -> None:
            return None

    for keys, named in [([settings.key("continue-dev")], "put it in CONTINUE_DEV_KEY in .env"),
                        (None, "put it in VIRTUAL_KEY in .env"),
                        (list(settings.keys.values()),
                         "put it in its variable in .env (VIRTUAL_KEY, CONTINUE_DEV_KEY)")]:
        with pytest.raises(ProxyUnreachableError) as caught:
            connect.litellm(settings, NoContainers(), via="auto", keys=keys)  # type: ignore[arg-type]
        assert caught.value.message.endswith(named), caught.value.message


def test_merge_of_an_empty_file_is_the_block() -> None:
    from invoke.vendor import yaml

    block = continuedev.models_block(["m"], "http://localhost:4000/", "K")
    merged = continuedev.merge("", block, "http://localhost:4000", yaml, "c")
    assert yaml.safe_load(merged.text)["models"][0]["apiBase"] == "http://localhost:4000/v1"
    assert (merged.replaced, merged.kept) == (0, 0)


# --------------------------------------------------------------------------- unknown settings


@pytest.mark.parametrize(("typo", "nearest"), [
    ("model: [gpt-4o-mini]", "gateway.keys.continue-dev.model (invoke.yaml or a -f file); "
                             "did you mean models?"),
    ("max_budgett: 5", "gateway.keys.continue-dev.max_budgett (invoke.yaml or a -f file); "
                       "did you mean max_budget?"),
    ("hand_over:\n        - dotenv: x/.env\n          varr: K",
     "gateway.keys.continue-dev.hand_over[0].varr (invoke.yaml or a -f file); did you mean var?"),
])
def test_a_misspelled_key_setting_is_exit_2_from_a_f_file(
        project: Project, litellm: Standin, typo: str, nearest: str) -> None:
    """The issue's own inputs, as YAML: never a key for every model, or one without a budget."""
    path = project.dir / "typo.yaml"
    path.write_text("gateway:\n  keys:\n    continue-dev:\n      env_var: CONTINUE_DEV_KEY\n"
                    f"      {typo}\n")
    done = project.run("-f", str(path), "keys.create", "--name", "continue-dev")
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: unknown setting {nearest}\n"
    assert not litellm.requests("/key/generate") and project.value("CONTINUE_DEV_KEY") == ""


def test_a_misspelled_setting_in_the_users_invoke_yaml_is_exit_2(
        project: Project, litellm: Standin) -> None:
    home = project.dir / "home"
    home.mkdir()
    (home / ".invoke.yaml").write_text("gateway:\n  timout: 5\n")
    done = project.run("keys.list", env={"HOME": str(home), "USERPROFILE": str(home)})
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("error: unknown setting gateway.timout (invoke.yaml or a -f file); "
                           "did you mean timeout?\n")


def test_a_misspelled_invoke_gateway_variable_is_exit_2(project: Project, litellm: Standin) -> None:
    done = project.run("keys.list", env={"INVOKE_GATEWAY_TIMOUT": "5"})
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("error: unknown setting INVOKE_GATEWAY_TIMOUT (environment): Invoke "
                           "ignores it; did you mean INVOKE_GATEWAY_TIMEOUT?\n")
    assert run_ok(project, "keys.list", env={"INVOKE_GATEWAY_TIMEOUT": "5"})


def test_unknown_settings_in_settings_directly() -> None:
    for raw, message in [
        ({"keys": {"c": {"env_var": "C", "model": ["gpt-4o-mini"]}}}, "did you mean models"),
        ({"keys": {"c": {"env_var": "C", "max_budgett": 5}}}, "did you mean max_budget"),
        ({"litellm_ulr": "http://x"}, "gateway.litellm_ulr .*did you mean litellm_url"),
        ({"zzz": 1}, "gateway.zzz .*known: compose_files"),
    ]:
        with pytest.raises(UsageError, match=message):
            load_settings({"gateway": raw}, environ={})
    # metadata is free-form; a key of the environment that Invoke applies is fine
    load_settings({"gateway": {"keys": {"open-webui": {"env_var": "V", "metadata": {"any": 1}}}}},
                  environ={"INVOKE_GATEWAY_KEYS_OPEN-WEBUI_ALIAS": "x"})
