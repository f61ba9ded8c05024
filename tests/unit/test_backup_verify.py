"""stack.restore checks a backup whole before it touches anything: a part missing, a byte
flipped in a part, a manifest tampered with or unreadable - each refused with exit 14 and one
line, .env untouched, Docker never asked. Also --keep and the pruning rule (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.gateway import backup
from tests.support.project import Project

PARTS = {backup.DATABASE: b"PGDMP fake dump " * 100, backup.WEBUI_DATA: b"tar" * 50,
         backup.CONFIG: b"model_list: []\n", backup.ENV: b"LITELLM_SALT_KEY=sk-salt-1234567890\n"}


def make_backup(folder: Path, parts: dict[str, bytes] = PARTS) -> Path:
    folder.mkdir(parents=True)
    for name, data in parts.items():
        (folder / name).write_bytes(data)
    manifest = backup.Manifest(created="2026-12-02T19:00:00Z", project="ai-gateway-test",
                               images={"postgres": "postgres:16"},
                               parts={n: backup.part_of(folder / n) for n in parts})
    (folder / backup.MANIFEST).write_bytes(manifest.to_json())
    return folder


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_good_backup_verifies(tmp_path: Path) -> None:
    folder = make_backup(tmp_path / "b")
    manifest = backup.verify(folder)
    assert set(manifest.parts) == set(PARTS)
    assert manifest.parts[backup.DATABASE].size == len(PARTS[backup.DATABASE])


def _damage_part(folder: Path) -> None:
    flip_byte(folder / backup.DATABASE)


def _truncate_part(folder: Path) -> None:
    (folder / backup.WEBUI_DATA).write_bytes(b"tar")


def _remove_part(folder: Path) -> None:
    (folder / backup.ENV).unlink()


def _tamper_manifest(folder: Path) -> None:
    data = json.loads((folder / backup.MANIFEST).read_text())
    data["parts"][backup.CONFIG]["sha256"] = "0" * 64
    (folder / backup.MANIFEST).write_text(json.dumps(data))


def _break_manifest(folder: Path) -> None:
    (folder / backup.MANIFEST).write_text("{not json")


def _drop_manifest(folder: Path) -> None:
    (folder / backup.MANIFEST).unlink()


def _drop_part_from_manifest(folder: Path) -> None:
    data = json.loads((folder / backup.MANIFEST).read_text())
    del data["parts"][backup.DATABASE]
    (folder / backup.MANIFEST).write_text(json.dumps(data))


@pytest.mark.parametrize(("damage", "said"), [
    (_damage_part, "litellm.dump does not match its checksum"),
    (_truncate_part, "open-webui.tar does not match its checksum"),
    (_remove_part, "env is missing"),
    (_tamper_manifest, "litellm-config.yaml does not match its checksum"),
    (_break_manifest, "cannot be read as a backup manifest"),
    (_drop_manifest, "has no manifest.json"),
    (_drop_part_from_manifest, "lists no litellm.dump"),
])
def test_a_damaged_backup_is_refused_before_anything_changes(project: Project, damage, said) -> None:
    folder = make_backup(project.dir / "backups" / "ai-gateway-test-20261202T190000Z")
    damage(folder)
    before = project.env.read_bytes()
    # DOCKER_HOST points nowhere: the refusal must come before Docker is asked (exit 10 otherwise)
    done = project.run("stack.restore", str(folder), "--yes",
                       env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert done.returncode == 14, done.stdout + done.stderr
    assert said in done.stderr
    assert "nothing was changed" in done.stderr or "damaged" in done.stderr or "incomplete" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert project.env.read_bytes() == before
    assert not (project.dir / ".env.restore-journal.json").exists()


def test_restore_without_a_folder_and_bad_keep_are_usage_errors(project: Project) -> None:
    done = project.run("stack.restore", " ")
    assert done.returncode == 2, done.stderr
    done = project.run("stack.restore", str(project.dir / "nothing-here"), "--yes")
    assert done.returncode == 14 and "is not a backup folder" in done.stderr
    done = project.run("stack.backup", "--keep", "0")
    assert done.returncode == 2 and "--keep" in done.stderr


def test_prune_keeps_the_newest_complete_backups_of_this_project(tmp_path: Path) -> None:
    for stamp in ("20261201T000000Z", "20261202T000000Z", "20261203T000000Z"):
        make_backup(tmp_path / f"proj-{stamp}")
    make_backup(tmp_path / "other-20261130T000000Z")
    (tmp_path / "proj-20261204T000000Z.partial").mkdir()
    gone = backup.prune(tmp_path, "proj", keep=2)
    assert [p.name for p in gone] == ["proj-20261201T000000Z"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other-20261130T000000Z", "proj-20261202T000000Z", "proj-20261203T000000Z",
        "proj-20261204T000000Z.partial"]


def test_salt_conflict_only_against_live_volumes() -> None:
    mine, theirs = {"LITELLM_SALT_KEY": "a" * 20}, {"LITELLM_SALT_KEY": "b" * 20}
    assert backup.salt_conflict(theirs, mine, volumes_exist=True)
    assert not backup.salt_conflict(theirs, mine, volumes_exist=False)
    assert not backup.salt_conflict(mine, mine, volumes_exist=True)
    assert not backup.salt_conflict(theirs, None, volumes_exist=True)
