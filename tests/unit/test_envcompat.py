"""Issue 11, kinds 1 and 2: .env read the way Compose, a URL and an HTTP header will read it.

Every example of the issue (secrets replaced) runs through the real command line; every rule of
``tasks/envstore/compat.py`` is compared with what the real ``docker compose config`` (v2) makes of
the same line; and what env.init and the keys tasks write is checked to pass it all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.config.settings import load_settings
from tasks.envstore import compat, envfile
from tasks.gateway import envsetup
from tests.support.project import MASTER, Project, Standin
from tests.support.stack import require

SECRETISH = "Q7rvTzL2mK8"  # a part of every example value below that must never be printed

# (line as written in .env, the check that flags it, a fragment of the fix in the message)
ISSUE_EXAMPLES = {
    "$ in an unquoted master key": (f"LITELLM_MASTER_KEY=sk-{SECRETISH}$pW4nX6bY1cD3eF5gHjJ",
                                    "compose", "single quotes"),
    "$ in a double-quoted password": (f'WEBUI_ADMIN_PASSWORD="Adm1n$ecret-{SECRETISH}"',
                                      "compose", "single quotes"),
    # the issue's 'p@ss#w0rd/2024:x' is fine now: LiteLLM builds its database URL itself and
    # percent-encodes it (test_url_characters_litellm_encodes_are_not_flagged); a space it cannot
    "a space in the database password": (f"POSTGRES_PASSWORD='pass word-{SECRETISH}'",
                                         "url", "without spaces"),
    "umlauts in the master key": (f"LITELLM_MASTER_KEY=sk-Pässwörter-für-den-Proxy-{SECRETISH}",
                                  "header", "env.init"),
    "a trailing space inside quotes": (f'LITELLM_MASTER_KEY="{MASTER} "', "header", "env.init"),
    "sk-your-master-key-here": ("LITELLM_MASTER_KEY=sk-your-master-key-here", "placeholder", ""),
    "sk-<your-master-key>": ("LITELLM_MASTER_KEY=sk-<your-master-key>", "placeholder", ""),
    "changeme": ("POSTGRES_PASSWORD=changeme", "placeholder", ""),
    "$$ in a value": (f"UI_PASSWORD=pa$$word-{SECRETISH}", "compose", "$$"),
    "NAME= # text": ("UI_PASSWORD= # set this later", "compose", "own"),
    "a tab before #": (f"UI_PASSWORD=pass-{SECRETISH}\t# note", "compose", "tab"),
    "\\\\ inside single quotes": (f"WEBUI_SECRET_KEY='a\\\\b-{SECRETISH}'", "compose", "backslash"),
    "\\' inside double quotes": (f'WEBUI_SECRET_KEY="it\\\'s-{SECRETISH}"', "compose", "backslash"),
    "a space inside a virtual key": (f"VIRTUAL_KEY=sk-abc {SECRETISH}", "header", "exactly"),
    "a space in the database name": ("POSTGRES_DB='lite llm'", "url", "DATABASE_NAME"),
}


def with_line(project: Project, line: str) -> None:
    """The project's valid .env with the variable of ``line`` written as ``line``."""
    name = line.split("=", 1)[0]
    kept = [ln for ln in project.read().splitlines() if not ln.startswith(f"{name}=")]
    project.env.write_text("\n".join([*kept, line]) + "\n")


@pytest.mark.parametrize("case", sorted(ISSUE_EXAMPLES))
def test_env_check_flags_each_example_without_quoting_it(project: Project, case: str) -> None:
    line, check, fix = ISSUE_EXAMPLES[case]
    with_line(project, line)
    done = project.run("env.check", "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    flagged = [f for f in report["findings"] if f["level"] == "error" and f["check"] == check]
    name = line.split("=", 1)[0]
    assert any(name in f["message"] and fix in f["message"] for f in flagged), report["findings"]
    assert SECRETISH not in done.stdout + done.stderr and MASTER not in done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(ISSUE_EXAMPLES))
def test_stack_start_refuses_each_example_before_docker(project: Project, case: str) -> None:
    """stack.start's preflight is env.check: exit 3 and one line, before any container."""
    line, _check, _fix = ISSUE_EXAMPLES[case]
    with_line(project, line)
    done = project.run("stack.start", env={"PATH": "/nonexistent"})  # no docker reached
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert SECRETISH not in done.stdout + done.stderr


@pytest.mark.parametrize("line", [
    f"LITELLM_MASTER_KEY=sk-Pässwörter-für-den-Proxy-{SECRETISH}",
    f'LITELLM_MASTER_KEY="{MASTER} "',
    f"VIRTUAL_KEY=sk-abc {SECRETISH}",
])
@pytest.mark.parametrize("task", ["keys.list", "keys.create", "keys.rotate"])
def test_keys_tasks_refuse_a_key_no_header_can_carry(project: Project, litellm: Standin,
                                                     line: str, task: str) -> None:
    """Not a UnicodeEncodeError traceback, not exit 4 blaming the network: exit 3, the name."""
    with_line(project, line)
    before = len(litellm.requests())
    done = project.run(task)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert line.split("=", 1)[0] in done.stderr and "HTTP header" in done.stderr
    assert SECRETISH not in done.stdout + done.stderr and MASTER not in done.stderr
    assert len(litellm.requests()) == before, "refused before any request"


def test_a_master_key_from_the_environment_no_header_can_carry(project: Project) -> None:
    kept = [ln for ln in project.read().splitlines() if not ln.startswith("LITELLM_MASTER_KEY=")]
    project.env.write_text("\n".join(kept) + "\n")
    done = project.run("keys.list", env={"LITELLM_MASTER_KEY": "sk-Grüße-" + "g" * 20})
    assert done.returncode == 2, done.stderr
    assert "LITELLM_MASTER_KEY (environment)" in done.stderr and "Grüße" not in done.stderr


# --------------------------------------------------------------------------- against Compose

# lines whose value Compose and python-dotenv may read alike or not; the rules must agree with
# the real Compose on every one
COMPOSE_LINES = [
    "V=plain-value_1.2~3",
    "V=sk-Q7rvTzL2mK8$pW4nX6bY1cD3eF5gHjJ",
    'V="Adm1n$ecret-99x"',
    "V='p@ss$word'",
    "V=a$$b",
    "V='a$$b'",
    "V=${HOME}",
    "V= # text",
    "V=\t# tab comment",
    "V=#x",
    "V=x # comment",
    "V=a\t#tab",
    "V='a\\\\b'",
    'V="a\\\\b"',
    'V="a\\tb"',
    "V='it\\'s'",
    'V="it\\\'s"',
    'V="x\\"y"',
    'V="a\\bc\\fd\\ve\\dg"',
    "V=a\\nb\\\\c",
    "V=  spaced  ",
    "V=a'b\"c",
    "export V=exp",
    'V="multi\nline"',
    'V="q" # c',
    "V='s' # c",
    "V=sk-Pässwörter",
    'V="trailing "',
    "V=",
]


def _compose() -> str:
    docker = shutil.which("docker")
    require(docker is not None, "the docker CLI is not installed")
    assert docker is not None
    done = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                          timeout=30, check=False)
    require(done.returncode == 0, "Docker Compose v2 is not installed")
    return docker


def compose_reads(docker: str, folder: Path, lines: list[str]) -> dict[str, str]:
    """What Compose passes a service for V0..Vn, one .env line each."""
    env_lines = [line.replace("V", f"V{i}", 1) for i, line in enumerate(lines)]
    (folder / ".env").write_text("\n".join(env_lines) + "\n")
    services = "\n".join(f"      V{i}: ${{V{i}}}" for i in range(len(lines)))
    (folder / "compose.yml").write_text(f"services:\n  s:\n    image: none\n    environment:\n{services}\n")
    done = subprocess.run([docker, "compose", "--project-directory", str(folder), "-f",
                           str(folder / "compose.yml"), "--env-file", str(folder / ".env"),
                           "config", "--format", "json"], capture_output=True, text=True,
                          timeout=30, check=False, env={"PATH": "/usr/bin:/bin:/usr/local/bin",
                                                        "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr
    environment = json.loads(done.stdout)["services"]["s"]["environment"]
    return {k: str(v).replace("$$", "$") for k, v in environment.items() if v is not None}


def test_every_rule_agrees_with_the_real_compose(tmp_path: Path) -> None:
    docker = _compose()
    seen = compose_reads(docker, tmp_path, COMPOSE_LINES)
    doc = envfile.load(tmp_path / ".env")
    flagged = {p.name for p in compat.compose_problems(doc)}
    differ = {name for name, entry in doc.entries.items() if seen.get(name, "") != entry.value}
    assert differ, "some lines must differ, or this test proves nothing"
    assert flagged == differ, {n: COMPOSE_LINES[int(n[1:])] for n in flagged ^ differ}
    print(f"\n{len(COMPOSE_LINES)} lines: {len(differ)} read differently by Compose, all flagged; "
          f"{len(COMPOSE_LINES) - len(differ)} read alike, none flagged")


def test_the_project_compose_file_comparison_finds_each_difference(project: Project) -> None:
    """env.check's own `docker compose config` comparison, on the project's compose file: it
    sees the master key's $ even with the static rules switched off."""
    _compose()
    with_line(project, "LITELLM_MASTER_KEY=sk-Q7rvTzL2mK8$pW4nX6bY1cD3eF5gHjJ")
    settings = load_settings(None, env_file=str(project.env))
    doc = envfile.load(project.env)
    from tasks.containers.compose import service_environments

    raw = service_environments(settings, doc.entries, interpolate=False)
    passed = service_environments(settings, doc.entries)
    assert raw is not None and passed is not None
    problems = compat.compare_with_compose(doc, raw, passed)
    assert [p.name for p in problems] == ["LITELLM_MASTER_KEY"]
    assert "litellm" in problems[0].message and "pW4n" not in problems[0].message


def test_url_variables_come_from_the_compose_file() -> None:
    settings = load_settings(None)
    assert compat.url_variables(settings.compose_files) == {}  # no URL is built in compose
    assert compat.encoded_url_variables(settings.compose_files) == {
        "POSTGRES_USER": "DATABASE_USERNAME", "POSTGRES_PASSWORD": "DATABASE_PASSWORD",
        "POSTGRES_DB": "DATABASE_NAME"}


@pytest.mark.parametrize("line", [f"POSTGRES_PASSWORD='p@ss#w0rd/2024:{SECRETISH}'",
                                  "POSTGRES_USER=lite%40llm", "POSTGRES_DB='db?x=1&y#z'"])
def test_url_characters_litellm_encodes_are_not_flagged(project: Project, line: str) -> None:
    """LiteLLM percent-encodes DATABASE_* itself (checked against the real PostgreSQL by
    tests/e2e/test_stack_compose.py): the issue's URL-breaking password now reaches it intact."""
    with_line(project, line)
    done = project.run("env.check", "--json")
    report = json.loads(done.stdout)
    assert not [f for f in report["findings"] if f["check"] == "url"], report["findings"]


# --------------------------------------------------------------------------- what the tasks write


def test_env_init_never_writes_a_value_any_reader_sees_differently(tmp_path: Path) -> None:
    _compose()
    for round_ in range(25):
        path = tmp_path / f"{round_}.env"
        settings = load_settings(None, env_file=str(path))
        envsetup.init(settings)
        findings = envsetup.check(settings, compare=round_ < 3)  # compose itself: a few rounds
        bad = [f for f in findings if f.level == "error" and f.check not in ("gate", "git")]
        assert bad == [], bad


def test_the_keys_tasks_write_keys_every_reader_sees_alike(project: Project) -> None:
    _compose()
    for args in (["keys.create"], ["keys.rotate"], ["keys.create", "--force"]):
        assert project.run(*args).returncode == 0
        done = project.run("env.check", "--json")
        report = json.loads(done.stdout)
        assert report["ok"], report["findings"]
        assert any(f["check"] == "compose" and f["level"] == "ok" and "passes" in f["message"]
                   for f in report["findings"])


def test_placeholders_and_real_values() -> None:
    for value in ("sk-your-master-key-here", "sk-<your-master-key>", "changeme", "sk-xxxx",
                  "<your secret>", "your-password", "sk-changeme", "replace-me", "sk-1234"):
        assert envsetup._is_placeholder(value), value
    for value in ("sk-" + "Ab3_-" * 8, "admin@example.com", "p<a>ss-12", "Yourself-1234567"):
        assert not envsetup._is_placeholder(value), value


def test_env_check_says_when_compose_refuses_the_files(project: Project) -> None:
    """A value Compose refuses (this one is no port) is an error of env.check - not "not compared"
    - so stack.start stops before Compose does; Compose's own message, which may quote a value,
    is not shown."""
    _compose()
    with_line(project, "NGINX_PORT=abc")
    done = project.run("env.check")
    assert done.returncode == 3, done.stdout
    assert "`docker compose config` refuses the compose files with this .env" in done.stdout
    assert "abc" not in done.stdout + done.stderr

