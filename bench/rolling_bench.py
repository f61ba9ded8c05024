"""Failed requests while LiteLLM changes: three clients chat without pause on the real test stack
(the real LiteLLM with its PostgreSQL, the real HAProxy in front, the real Open WebUI, the fake
provider) while each operation runs; prints failed / total per client and the operation's wall
time.

    python bench/rolling_bench.py [--runs 1] [--stream-seconds 3] [--old-way] [--engine swarm]

Clients (tests/support/traffic.py): a chat through Open WebUI (its admin's session), a chat
through LiteLLM's published port with the virtual key, and a streamed chat through that port
whose answer the provider stretches over ``--stream-seconds``. Operations: ``invoke
stack.restart --service litellm`` and ``invoke keys.rotate-master --yes``; ``--old-way`` adds
what the tasks did before litellm-lb - ``docker compose up -d --force-recreate --no-deps
litellm`` - as the baseline. Counted: every request that started after the operation began and
ended before every client had finished one more request after it ended. Needs what the
end-to-end tests need (`bash .ci/setup` as root). ``--engine swarm``: the same on a swarm stack
(docker-stack.yml and tests/stack/stack.test.yml, as tests/e2e/test_swarm_e2e.py deploys it) on
the local engine, which must be a swarm manager with a node labelled ``ai-gateway.data=true``
(`docker swarm init --advertise-addr 127.0.0.1`, `docker node update --label-add
ai-gateway.data=true NODE`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.stack import STACK_DIR, StackProject, docker_env, make_project  # noqa: E402
from tests.support.traffic import traffic_for, wait_for_more  # noqa: E402


def operation(project: StackProject, args: list[str]) -> None:
    if args[0] == "compose":
        done = project.compose(*args[1:])
    else:
        done = project.run(*args)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--stream-seconds", type=float, default=3)
    parser.add_argument("--old-way", action="store_true")
    parser.add_argument("--engine", choices=("compose", "swarm"), default="compose")
    options = parser.parse_args()
    if options.old_way and options.engine == "swarm":
        raise SystemExit("--old-way is the compose engine's baseline")
    operations = [["stack.restart", "--service", "litellm"], ["keys.rotate-master", "--yes"]]
    if options.old_way:
        operations.append(["compose", "up", "-d", "--force-recreate", "--no-deps", "litellm"])
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp), docker_env())
        if options.engine == "swarm":
            project.compose_files += [REPO / "docker-stack.yml", STACK_DIR / "stack.test.yml"]
            project.extra_env["INVOKE_GATEWAY_ENGINE"] = "swarm"
        try:
            operation(project, ["stack.start"])
            rows = []
            for _ in range(options.runs):
                for args in operations:
                    traffic = traffic_for(project, slow_stream=options.stream_seconds, pause=0)
                    with traffic:
                        since = traffic.snapshot()
                        started = time.monotonic()
                        operation(project, args)
                        took = time.monotonic() - started
                        if args[0] == "compose":  # the old way does not wait for LiteLLM
                            project.compose("up", "-d", "--wait", "--no-deps", "litellm")
                            took = time.monotonic() - started
                        wait_for_more(traffic, traffic.snapshot(), timeout=300)
                        report = traffic.report(since)
                    rows.append((" ".join(args), took, report))
                    print(f"{rows[-1][0]}: {took:.1f} s, " + ", ".join(
                        f"{n} {r['failed']}/{r['sent']}" for n, r in report.items()), flush=True)
                    for name, result in report.items():
                        for error in result["errors"][:2]:
                            print(f"  {name}: {error}", flush=True)
            print("\n| operation | took | chat via Open WebUI | chat via LiteLLM's port | streamed chat |")
            print("| --- | --- | --- | --- | --- |")
            for name, took, report in rows:
                cells = " | ".join(f"{report[c]['failed']} of {report[c]['sent']} failed"
                                   for c in ("webui", "litellm", "stream"))
                print(f"| `{name}` ({options.engine}) | {took:.1f} s | {cells} |")
        finally:
            if options.engine == "swarm":
                project.run("stack.stop", "--volumes", "--yes")
            else:
                project.down()


if __name__ == "__main__":
    main()
