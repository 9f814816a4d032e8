"""RunFolder: the one output folder of every command (claim, refuse with a diff, resume,
overwrite only a run's own files, provenance, permissions, folders written before the record)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from gigatok_core.errors import GigatokError
from gigatok_core.runs import RunFolder
from gigatok_core.runs.folder import differences
from gigatok_core.runs.settings import PROVENANCE_KEYS

SETTINGS = {"seed": 0, "model": {"width": 8, "depth": 2}, "device": "cpu"}


def _folder(path: Path, settings: dict | None = None, **kw) -> RunFolder:
    kw = {
        "settings_file": "run.json",
        "outputs": ("metrics.jsonl", "shard-*.npy", "checkpoints"),
        "scratch": (".part-*",),
        "may_differ": ("device",),
        **kw,
    }
    return RunFolder(path, "toy run", SETTINGS if settings is None else settings, **kw)


def _write_run(path: Path) -> None:
    """A toy run's files, as a run of this kind writes them."""
    (path / "metrics.jsonl").write_text("{}\n")
    (path / "shard-0.npy").write_bytes(b"0")
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "latest").write_text("step-1\n")
    (path / ".part-3").write_bytes(b"")


def test_claim_writes_settings_outputs_and_provenance(tmp_path: Path) -> None:
    out = tmp_path / "new" / "run"
    folder = _folder(out)
    assert folder.check() is False  # nothing there: a new run
    assert folder.claim() == []
    saved = json.loads((out / "run.json").read_text())
    assert {k: saved[k] for k in SETTINGS} == SETTINGS
    assert saved["outputs"] == ["metrics.jsonl", "shard-*.npy", "checkpoints", "run.json"]
    assert set(PROVENANCE_KEYS) <= set(saved) and saved["command_line"].startswith("gigatok")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # written atomically


def test_a_dataclass_request_is_saved_as_the_settings(tmp_path: Path) -> None:
    from dataclasses import dataclass, field

    @dataclass
    class Request:
        seed: int = 0
        model: dict = field(default_factory=lambda: {"width": 8, "depth": 2})
        device: str = "cpu"
        out: Path = Path("x")

    _folder(tmp_path, Request()).claim()
    assert json.loads((tmp_path / "run.json").read_text())["out"] == "x"
    assert _folder(tmp_path, Request(device="cuda")).check() is True
    with pytest.raises(GigatokError, match="seed: 1 vs 0"):
        _folder(tmp_path, Request(seed=1)).check()


def test_own_run_resumes_and_execution_settings_may_differ(tmp_path: Path) -> None:
    _folder(tmp_path).claim()
    _write_run(tmp_path)
    assert _folder(tmp_path).check() is True
    assert _folder(tmp_path, {**SETTINGS, "device": "cuda"}).check() is True  # how it runs, not what


def test_another_run_is_refused_with_a_readable_diff_and_nothing_touched(tmp_path: Path) -> None:
    _folder(tmp_path).claim()
    _write_run(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    other = {**SETTINGS, "seed": 5, "model": {"width": 16, "depth": 2}}
    with pytest.raises(GigatokError, match="holds a toy run with other settings") as info:
        _folder(tmp_path, other).check()
    assert "model.width: 16 vs 8" in info.value.message and "seed: 5 vs 0" in info.value.message
    assert "this run vs that one" in info.value.message
    assert "--overwrite" in info.value.hint and "--output" in info.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_diff_lists_nested_keys_and_the_rest_as_a_count() -> None:
    ours = {"a": 1, "b": {"c": [1, 2], "d": None}, "e": "x" * 80}
    theirs = {"a": 2, "b": {"c": [1, 3], "d": 4}, "e": "y"}
    diffs = differences(ours, theirs, ignore={"b.d"})
    assert diffs[:2] == ["a: 1 vs 2", "b.c: [1, 2] vs [1, 3]"] and len(diffs) == 3
    assert diffs[2].startswith("e: 'xxx") and diffs[2].endswith("... vs 'y'")  # long values cut
    with pytest.raises(GigatokError, match=r"\(and 1 more\)"):
        many = {**SETTINGS, "seed": 1, "model": {"width": 1, "depth": 1}, "extra": 1}
        RunFolder(Path("."), "toy run", many, settings_file="x.json").refuse_if_different(SETTINGS)


def test_overwrite_removes_exactly_the_recorded_files_never_a_users(tmp_path: Path) -> None:
    _folder(tmp_path).claim()
    _write_run(tmp_path)
    (tmp_path / "my_notes.txt").write_text("mine")
    (tmp_path / "shards").mkdir()  # a user's folder whose name is close to a pattern
    other = _folder(tmp_path, {**SETTINGS, "seed": 5})
    assert other.check(overwrite=True) is False  # overwrite: never refused, never a resume
    removed = other.claim(overwrite=True)
    assert sorted(removed) == [".part-3", "checkpoints", "metrics.jsonl", "run.json", "shard-0.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_notes.txt", "run.json", "shards"]
    assert json.loads((tmp_path / "run.json").read_text())["seed"] == 5


def test_overwrite_follows_the_record_not_the_new_runs_outputs(tmp_path: Path) -> None:
    _folder(tmp_path, outputs=("a.png",)).claim()
    (tmp_path / "a.png").write_bytes(b"a")
    (tmp_path / "b.png").write_bytes(b"user's")  # not recorded by the run in the folder
    _folder(tmp_path, {**SETTINGS, "seed": 1}, outputs=("b.png",)).claim(overwrite=True)
    assert not (tmp_path / "a.png").exists() and (tmp_path / "b.png").read_bytes() == b"user's"


def test_a_resumed_run_keeps_the_record_of_what_was_written_before(tmp_path: Path) -> None:
    _folder(tmp_path, outputs=("a.png", "shard-*.npy")).claim()
    (tmp_path / "a.png").write_bytes(b"a")
    (tmp_path / "shard-0.npy").write_bytes(b"0")
    _folder(tmp_path, outputs=("b.png", "shard-*.npy")).claim()  # the same run, continued
    recorded = json.loads((tmp_path / "run.json").read_text())["outputs"]
    assert recorded == ["a.png", "shard-*.npy", "b.png", "run.json"]  # patterns stay patterns


def test_an_edited_record_never_reaches_a_users_files(tmp_path: Path) -> None:
    _folder(tmp_path).claim()
    saved = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**saved, "outputs": ["*", "../x", "metrics.jsonl"]}))
    (tmp_path / "my_notes.txt").write_text("mine")
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    assert sorted(_folder(tmp_path).remove_previous()) == ["metrics.jsonl", "run.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["my_notes.txt"]


def test_files_of_the_kind_without_settings_are_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "my_notes.txt").write_text("mine")
    with pytest.raises(GigatokError, match=r"already exist .*no run\.json to resume from") as info:
        _folder(tmp_path).check()
    assert "--overwrite" in info.value.hint
    only_notes = tmp_path / "notes_only"
    only_notes.mkdir()
    (only_notes / "my_notes.txt").write_text("mine")
    assert _folder(only_notes).check() is False  # a user's files alone do not stop a new run
    _folder(only_notes).claim()
    assert (only_notes / "my_notes.txt").read_text() == "mine"


def test_bad_folders_and_settings_files_get_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(GigatokError, match="exists and is not a folder"):
        _folder(tmp_path / "file").check()
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(GigatokError, match=r"run\.json cannot be read") as info:
        _folder(tmp_path).check()
    assert "--overwrite" in info.value.hint
    _folder(tmp_path).claim(overwrite=True)  # --overwrite replaces an unreadable record
    assert json.loads((tmp_path / "run.json").read_text())["seed"] == 0
    with pytest.raises(ValueError, match="plain names"):
        _folder(tmp_path, outputs=("../elsewhere",))


def test_a_folder_written_before_the_record_resumes_and_overwrites(tmp_path: Path) -> None:
    """Settings files of older versions have no ``outputs`` and no provenance."""
    (tmp_path / "run.json").write_text(json.dumps(SETTINGS))
    _write_run(tmp_path)
    (tmp_path / "my_notes.txt").write_text("mine")
    assert _folder(tmp_path).check() is True
    _folder(tmp_path, {**SETTINGS, "seed": 2}).claim(overwrite=True)  # the kind's files go, only them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_notes.txt", "run.json"]


def test_an_old_sample_json_resumes_and_overwrite_removes_its_planned_files(tmp_path: Path) -> None:
    from gigatok_core.tasks.sample_output import check_output, plan

    items = plan([22], 2)
    old = {"gpt": "gpt-tiny", "seed": 0, "classes": [22], "num_per_class": 2}  # no outputs: older format
    (tmp_path / "sample.json").write_text(json.dumps(old))
    for it in items:
        (tmp_path / f"{it.stem}.png").write_bytes(b"png")
    (tmp_path / "my_notes.txt").write_text("mine")
    folder, resuming = check_output(tmp_path, items, dict(old), overwrite=False, save_codes=False, grid=False)
    assert resuming
    with pytest.raises(GigatokError, match="different settings"):
        check_output(tmp_path, items, {**old, "seed": 1}, overwrite=False, save_codes=False, grid=False)
    folder, _ = check_output(
        tmp_path, plan([1], 1), {**old, "seed": 1}, overwrite=True, save_codes=False, grid=False
    )
    folder.claim(overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_notes.txt", "sample.json"]


def test_an_old_training_config_yaml_resumes_and_the_new_one_carries_provenance(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from gigatok_core.train.run_dir import config_yaml, prepare_run_dir

    config = {"model": {"width": 8}, "run": {"seed": 0, "max_steps": 5}}
    (tmp_path / "config.yaml").write_text(config_yaml(config))  # as the previous version wrote it
    longer = {**config, "run": {"seed": 0, "max_steps": 9}}
    assert prepare_run_dir(tmp_path, longer, resume="auto", overwrite=False, is_main=True) is True
    text = (tmp_path / "config.yaml").read_text()
    assert text.startswith("# gigatok_version: ") and "# command_line: gigatok" in text
    assert OmegaConf.to_container(OmegaConf.load(tmp_path / "config.yaml")) == longer  # still a config
    with pytest.raises(GigatokError, match="another config") as info:
        prepare_run_dir(
            tmp_path, {**config, "run": {"seed": 3}}, resume="auto", overwrite=False, is_main=True
        )
    assert "run.seed: 3 vs 0" in info.value.message


def test_a_failed_start_releases_only_what_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    with pytest.raises(RuntimeError), _folder(out).released_on_failed_start(is_main=True):
        _folder(out).claim()
        (out / "metrics.jsonl").write_text("{}\n")
        raise RuntimeError("the model does not fit")
    assert not out.exists()
    out.mkdir()
    (out / "my_notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), _folder(out).released_on_failed_start(is_main=True):
        _folder(out).claim()
        raise RuntimeError("a bad file")
    assert [p.name for p in out.iterdir()] == ["my_notes.txt"]
    started = tmp_path / "started"
    with (
        pytest.raises(RuntimeError),
        _folder(started).released_on_failed_start(started=lambda: True, is_main=True),
    ):
        _folder(started).claim()
        raise RuntimeError("killed after the first checkpoint")
    assert (started / "run.json").exists()  # a run that started keeps its files to resume
    with pytest.raises(RuntimeError), _folder(started).released_on_failed_start(is_main=True):
        raise RuntimeError("a resumed run that fails")
    assert (started / "run.json").exists()  # the folder held a run before: nothing removed
    unclaimed = tmp_path / "unclaimed"
    unclaimed.mkdir()
    (unclaimed / "metrics.jsonl").write_text("{}\n")  # a kind's file without settings: refused, kept
    with pytest.raises(GigatokError), _folder(unclaimed).released_on_failed_start(is_main=True):
        _folder(unclaimed).check()
    assert (unclaimed / "metrics.jsonl").read_text() == "{}\n"


def test_checkpoint_step_folders_honour_the_umask(tmp_path: Path) -> None:
    from gigatok_core.checkpoints.training import save_checkpoint

    old = os.umask(0o022)
    try:
        step = save_checkpoint(tmp_path, weights={"m": {"w": torch.zeros(2)}}, state={}, meta={"step": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(step.stat().st_mode) == 0o755
    assert stat.S_IMODE((step / "m.safetensors").stat().st_mode) == 0o644
