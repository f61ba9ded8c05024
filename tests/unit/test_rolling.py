"""The rolling step's bookkeeping of LiteLLM containers, without Docker: a container Docker
refuses to remove is tried again until it is gone, and a stopped one left behind is removed
before ``docker compose up --no-recreate --scale`` could start it again with its old settings.
(The step itself runs on the real stack: tests/e2e/test_rolling_e2e.py; the removal of a
restarting container on the real engine: tests/e2e/test_stack_compose.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from tasks.base.errors import StackError
from tasks.containers import rolling
from tasks.containers.rolling import Roll


class DockerAnswer(Exception):
    def __init__(self, status_code: int, text: str) -> None:
        super().__init__(text)
        self.status_code = status_code


class Container:
    """The docker SDK's Container as the rolling step uses it."""

    def __init__(self, name: str, status: str, *, refusals: int = 0,
                 service: str = rolling.LITELLM) -> None:
        self.id = self.name = name
        self.status = status
        self.labels = {"com.docker.compose.service": service}
        self.attrs: dict[str, Any] = {"Created": name}
        self.refusals = refusals
        self.removes = 0
        self.gone = False

    def stop(self, timeout: int) -> None:
        self.status = "exited"

    def remove(self, force: bool) -> None:
        self.removes += 1
        if self.gone:
            raise DockerAnswer(404, "No such container")
        if self.refusals:
            self.refusals -= 1
            raise DockerAnswer(409, f"Could not kill running container {self.id}, cannot remove"
                                    f" - Container {self.id} is restarting")
        self.gone = True

    def reload(self) -> None:
        if self.gone:
            raise DockerAnswer(404, "No such container")


def test_a_refused_remove_is_tried_until_the_container_is_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rolling.time, "sleep", lambda _s: None)
    container = Container("litellm-2", "restarting", refusals=3)
    Roll._remove(container, timeout=5)
    assert container.gone and container.removes == 4


def test_a_container_docker_never_removes_is_an_error_naming_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rolling, "REMOVE_SECONDS", 0.0)
    container = Container("aigw-litellm-2", "restarting", refusals=10**6)
    with pytest.raises(StackError, match=r"did not remove the litellm container aigw-litellm-2 .*"
                       r"is restarting.*`docker rm -f aigw-litellm-2`"):
        Roll._remove(container, timeout=5)


class Stack:
    def __init__(self, containers: list[Container]) -> None:
        self.listed = containers
        self.calls: list[tuple[str, ...]] = []

    def containers(self) -> list[Container]:
        return [c for c in self.listed if not c.gone]

    def compose_ok(self, *args: str, what: str) -> None:
        # what is there when compose scales: a stopped litellm would be started again
        self.calls.append(tuple(c.name for c in self.containers()))
        self.listed.append(Container("litellm-new", "running"))


def test_a_stopped_litellm_left_behind_is_removed_before_compose_scales(
        monkeypatch: pytest.MonkeyPatch) -> None:
    serving = Container("litellm-1", "running")
    stack = Stack([serving, Container("litellm-2", "exited"), Container("litellm-3", "dead"),
                   Container("open-webui-1", "exited", service="open-webui")])
    roll = Roll(stack, timeout=1)  # type: ignore[arg-type]
    monkeypatch.setattr(roll, "balancer", lambda: object())
    monkeypatch.setattr(roll, "settle", lambda _lb=None: False)
    monkeypatch.setattr(roll, "_until_ready", lambda _c, _lb: None)
    monkeypatch.setattr(roll, "retire", lambda c, _lb: setattr(c, "gone", True))
    roll.replace()
    assert stack.calls == [("litellm-1", "open-webui-1")]
    assert [c.name for c in stack.containers()] == ["open-webui-1", "litellm-new"]


@pytest.mark.parametrize("refusals", [0, 10**6], ids=["removed", "docker-refuses"])
def test_a_new_litellm_that_never_turns_ready_says_whether_it_was_removed(
        monkeypatch: pytest.MonkeyPatch, refusals: int) -> None:
    monkeypatch.setattr(rolling, "REMOVE_SECONDS", 0.0)
    monkeypatch.setattr(rolling.time, "sleep", lambda _s: None)
    serving = Container("litellm-1", "running")
    stack = Stack([serving])
    roll = Roll(stack, timeout=1)  # type: ignore[arg-type]
    monkeypatch.setattr(roll, "balancer", lambda: object())
    monkeypatch.setattr(roll, "settle", lambda _lb=None: False)

    def never_ready(container: Container, _lb: object) -> None:
        container.refusals = refusals
        raise roll._failure(container, "not ready after 1s (--timeout)")

    monkeypatch.setattr(roll, "_until_ready", never_ready)
    with pytest.raises(rolling.RollFailed) as failed:
        roll.replace()
    new = next(c for c in stack.listed if c.name == "litellm-new")
    assert not serving.gone
    if refusals:
        assert not new.gone and "was removed" not in failed.value.message
        assert "`docker rm -f litellm-new`" in failed.value.message
    else:
        assert new.gone and failed.value.message.endswith("; litellm-new was removed")
