"""CLI contract of `gigatok download` and `gigatok cache` (typer CliRunner on gigatok_cli.main.app;
offline). The old mode flags of `download` (--list, --where, --import, --verify, --clear) keep
working for one release, each with a note naming its `cache` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import bump_mtime
from hub_server import FAKE_SHAPES, fake_checkpoint
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core import hub, registry, weights
from gigatok_core.hub import cache

runner = CliRunner()


def test_where_prints_the_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIGATOK_CACHE", str(tmp_path / "here"))
    result = runner.invoke(app, ["download", "--where"])
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "here")


def test_list_json_has_every_file_and_paper_numbers() -> None:
    result = runner.invoke(app, ["download", "--list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["file"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(registry.weights_names())
    ss = rows["VQ_SS256_e100.pt"]
    assert (ss["preset"], ss["kind"], ss["params"], ss["cached"]) == ("s-s", "tokenizer", 136073227, None)
    assert ss["paper"] == {"rfid": 1.01, "lpips": 0.2226}
    assert rows["GPT_XXL256_e300_VQ_XLXXL.pt"]["preset"] == "gpt-xxl@xl-xxl"
    assert rows["pt_inception-2015-12-05-6726825d.pth"]["preset"] == "inception"


def test_list_table_shows_cached_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "expected_shapes", lambda rec: FAKE_SHAPES)
    body, _, _ = fake_checkpoint()
    (tmp_path / "f.pt").write_bytes(body)
    assert (
        runner.invoke(app, ["download", "--import", str(tmp_path / "f.pt"), "--preset", "s-b"]).exit_code == 0
    )
    result = runner.invoke(app, ["download", "--list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert "yes" in lines["s-b"] and "yes" not in lines["s-s"]
    assert "rfid 0.89" in lines["s-b"] and "136M" in lines["s-s"]
    # a touched file is 'unverified' until its next use; a partial download shows how far it got
    stored = cache.weights_dir() / "VQ_SB256_e200.safetensors"
    bump_mtime(stored)
    (cache.weights_dir() / "VQ_SS256_e100.pt.part").write_bytes(b"x" * 1000)
    rows = {r["preset"]: r for r in json.loads(runner.invoke(app, ["download", "--list", "--json"]).stdout)}
    assert rows["s-b"]["state"] == "unverified" and rows["s-s"]["state"] == "partial 1000"
    result = runner.invoke(app, ["download", "--list"], env={"COLUMNS": "250"})
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert "unverified" in lines["s-b"] and "partial" in lines["s-s"]


def test_unknown_name_suggests_the_closest() -> None:
    result = runner.invoke(app, ["download", "gpt-xxx"])
    assert result.exit_code == 1
    assert (
        "unknown preset or weights name 'gpt-xxx'" in result.output
        and "did you mean 'gpt-xxl'" in result.output
    )


def test_offline_download_fails_with_instructions() -> None:
    result = runner.invoke(app, ["download", "gpt-b@s-s"])
    assert result.exit_code == 1
    assert "GPT_B256_e300_VQ_SS.pt" in result.output and "offline" in result.output
    assert "Traceback" not in result.output


def test_import_then_download_then_verify_then_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "expected_shapes", lambda rec: FAKE_SHAPES)
    body, _, _ = fake_checkpoint()
    (tmp_path / "f.pt").write_bytes(body)
    res = runner.invoke(app, ["download", "--import", str(tmp_path / "f.pt"), "--preset", "s-s"])
    assert res.exit_code == 0, res.output
    stored = cache.weights_dir() / "VQ_SS256_e100.safetensors"
    assert stored.is_file()
    res = runner.invoke(app, ["download", "s-s", "-q"])  # offline, served by the cache
    assert res.exit_code == 0 and str(stored) in res.stdout.replace("\n", "")
    res = runner.invoke(app, ["download", "--verify"])
    assert res.exit_code == 0 and "ok" in res.stdout
    data = stored.read_bytes()
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # a changed byte, whatever it was
    res = runner.invoke(app, ["download", "--verify", "s-s"])
    assert res.exit_code == 1 and "corrupt" in res.stdout
    runner.invoke(app, ["download", "--import", str(tmp_path / "f.pt"), "--preset", "s-s"])
    res = runner.invoke(app, ["download", "--clear", "s-s"])
    assert res.exit_code == 0 and "removed 1 files" in res.stdout and not stored.exists()


def test_import_wrong_preset_and_missing_preset_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "expected_shapes", lambda rec: FAKE_SHAPES)
    body, _, _ = fake_checkpoint(scale=3)
    (tmp_path / "f.pt").write_bytes(body)
    res = runner.invoke(app, ["download", "--import", str(tmp_path / "f.pt"), "--preset", "b-l"])
    assert res.exit_code == 1 and "does not fit b-l" in res.output
    res = runner.invoke(app, ["download", "--import", str(tmp_path / "f.pt")])
    assert res.exit_code == 1 and "--preset" in res.output


def test_nothing_requested_is_an_error() -> None:
    res = runner.invoke(app, ["download"])
    assert res.exit_code == 1 and "gigatok cache list" in res.output and "--all" in res.output


def test_several_names_report_every_failure() -> None:
    res = runner.invoke(app, ["download", "s-s", "vgg16"])  # offline: both fail, both are reported
    assert res.exit_code == 1
    assert (
        "VQ_SS256_e100.pt is not in the cache" in res.output
        and "vgg16-397923af.pth is not in the cache" in res.output
    )
    assert "2 of 2 files could not be fetched" in res.output


def test_os_errors_are_clear_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "not_a_folder").write_text("x")
    monkeypatch.setenv("GIGATOK_CACHE", str(tmp_path / "not_a_folder"))
    res = CliRunner().invoke(app, ["download", "--import", str(tmp_path / "not_a_folder"), "--preset", "s-s"])
    assert res.exit_code == 1 and "Traceback" not in res.output and "error:" in res.output
    assert "not_a_folder" in res.output and "hint:" in res.output


def test_network_errors_get_a_network_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    def refuse(*args: object, **kwargs: object) -> None:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(hub, "catalog_rows", refuse)
    res = CliRunner().invoke(app, ["download", "--list"])
    assert res.exit_code == 1 and "connection refused" in res.output and "check the network" in res.output


def test_list_sizes_are_known_or_blank_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "expected_shapes", lambda rec: FAKE_SHAPES)
    rows = {r["file"]: r for r in json.loads(runner.invoke(app, ["download", "--list", "--json"]).stdout)}
    ss = rows["VQ_SS256_e100.pt"]
    assert ss["size"] is None and "not published" in ss["size_note"]  # nothing recorded: no guess
    body, _, _ = fake_checkpoint()
    (tmp_path / "f.pt").write_bytes(body)
    assert (
        runner.invoke(app, ["download", "--import", str(tmp_path / "f.pt"), "--preset", "s-s"]).exit_code == 0
    )
    rows = {r["file"]: r for r in json.loads(runner.invoke(app, ["download", "--list", "--json"]).stdout)}
    assert rows["VQ_SS256_e100.pt"]["size"] == len(body) and rows["VQ_SS256_e100.pt"]["size_note"] is None
    table = runner.invoke(app, ["download", "--list"], env={"COLUMNS": "250"}).stdout
    lines = {
        line.split("│")[1].strip(): line.split("│") for line in table.splitlines() if line.count("│") > 3
    }
    assert lines["s-s"][4].strip() == f"{len(body) / 1000:.1f} KB" and lines["s-b"][4].strip() == ""
    assert "?" not in "".join(cells[4] for cells in lines.values())
    assert "blank size: not published with the release" in " ".join(table.split())


@pytest.mark.parametrize(
    ("columns", "headers", "dropped"),
    [
        ("80", ["preset", "params", "cached", "source"], ["hash", "paper", "file"]),
        ("120", ["preset", "source", "hash"], ["paper", "file"]),
        ("250", ["preset", "source", "hash", "paper", "file"], []),
    ],
)
def test_list_fits_the_terminal(columns: str, headers: list[str], dropped: list[str]) -> None:
    """A narrow terminal drops the free-text columns (and says where they are) instead of squeezing
    every column to nothing; each row still shows its preset and source."""
    res = runner.invoke(app, ["cache", "list"], env={"COLUMNS": columns})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = next(line for line in lines if "preset" in line and "kind" in line)
    cells = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert all(h in cells for h in headers) and not any(d in cells for d in dropped), cells
    assert all(len(line) <= int(columns) for line in lines)
    assert any(line.startswith("│ s-s ") and "hub → drive" in line for line in lines)
    assert ("a terminal of 150+ columns" in " ".join(res.output.split())) == ("paper" in dropped)


# ---------------------------------------------------------------------------------------------
# `gigatok cache` and the notes of the old flags
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["--where"], "gigatok cache where"),
        (["--list", "--json"], "gigatok cache list --json"),
        (["--verify", "s-s"], "gigatok cache verify"),
        (["--clear", "s-s"], "gigatok cache clear NAMES --yes"),
        (["--import", "missing.pt", "--preset", "s-s"], "gigatok cache import FILE --preset NAME"),
    ],
)
def test_old_flags_work_with_a_one_line_note(old: list[str], new: str) -> None:
    res = runner.invoke(app, ["download", *old])
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and f"is now `{new}`" in notes[0] and "next release" in notes[0], res.stderr
    assert "note:" not in res.stdout  # stdout stays what the new command prints
    if old[0] == "--import":  # the old flag ran the import: its error, not a parse error
        assert res.exit_code == 1 and "missing.pt does not exist" in res.output
    else:
        assert res.exit_code == 0, res.output


def test_old_flags_are_hidden_from_help() -> None:
    text = runner.invoke(app, ["download", "--help"], env={"COLUMNS": "200"}).output
    assert "--all" in text and "gigatok cache --help" in text
    assert not any(flag in text for flag in ("--list", "--where", "--verify", "--clear", "--import"))


def test_cache_where_list_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIGATOK_CACHE", str(tmp_path / "here"))
    res = runner.invoke(app, ["cache", "where"])
    assert res.exit_code == 0 and res.stdout.strip() == str(tmp_path / "here") and not res.stderr
    rows = json.loads(runner.invoke(app, ["cache", "list", "--json"]).stdout)
    assert {r["file"] for r in rows} == set(registry.weights_names())
    res = runner.invoke(app, ["cache", "list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "GigaTok weights" in res.stdout and "VQ_SS256_e100.pt" in res.stdout
    res = runner.invoke(app, ["cache", "verify"])
    assert res.exit_code == 0 and "the cache is empty" in res.stdout
    res = runner.invoke(app, ["cache", "verify", "s-s"])
    assert res.exit_code == 0 and "not cached" in res.stdout
    res = runner.invoke(app, ["cache", "verify", "s-x"])
    assert res.exit_code == 1 and "unknown preset or weights name 's-x'" in res.output


def _imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset: str = "s-s") -> Path:
    monkeypatch.setattr(weights, "expected_shapes", lambda rec: FAKE_SHAPES)
    body, _, _ = fake_checkpoint()
    (tmp_path / "f.pt").write_bytes(body)
    res = runner.invoke(app, ["cache", "import", str(tmp_path / "f.pt"), "--preset", preset])
    assert res.exit_code == 0 and f"imported {tmp_path / 'f.pt'} as {preset}" in res.stdout, res.output
    stored = hub.stored_path(registry.weights_record(registry.import_target(preset)))
    assert stored.is_file()
    return stored


def test_cache_import_then_verify_then_clear_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = _imported(tmp_path, monkeypatch)
    rows = {r["preset"]: r for r in json.loads(runner.invoke(app, ["cache", "list", "--json"]).stdout)}
    assert rows["s-s"]["state"] == "yes"
    res = runner.invoke(app, ["cache", "verify", "s-s"])
    assert res.exit_code == 0 and "ok" in res.stdout
    res = runner.invoke(app, ["cache", "clear", "s-s"], input="n\n")  # shown, asked, refused
    assert res.exit_code == 0 and str(stored) in res.stdout and "nothing deleted" in res.stdout
    assert "delete these 1 files?" in res.stderr and stored.is_file()
    res = runner.invoke(app, ["cache", "clear", "s-s"], input="")  # no answer: a clear error, kept
    assert res.exit_code == 1 and "--yes" in res.output and "Traceback" not in res.output
    assert stored.is_file()
    res = runner.invoke(app, ["cache", "clear", "s-s"], input="y\n")
    assert res.exit_code == 0 and "removed 1 files" in res.stdout and not stored.exists()
    res = runner.invoke(app, ["cache", "clear", "s-s", "--yes"])
    assert res.exit_code == 0 and "not cached" in res.stdout


def test_cache_clear_all_keeps_the_users_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cache clear` with no names deletes every registered file, and nothing else in the cache."""
    stored = _imported(tmp_path, monkeypatch, "s-s")
    other = _imported(tmp_path, monkeypatch, "s-b")
    mine = [stored.parent / "my_notes.txt", cache.cache_dir() / "keep.pt", stored.parent / "VQ_SS256.pt"]
    for path in mine:
        path.write_text("mine")
    res = runner.invoke(app, ["cache", "clear", "--yes"])
    assert res.exit_code == 0 and "removed 2 files" in res.stdout, res.output
    assert not stored.exists() and not other.exists() and all(p.read_text() == "mine" for p in mine)
    assert json.loads(runner.invoke(app, ["cache", "list", "--json"]).stdout)[0]["state"] == "no"


def test_cache_import_needs_a_preset_and_an_existing_file(tmp_path: Path) -> None:
    res = runner.invoke(app, ["cache", "import", str(tmp_path / "f.pt")])
    assert res.exit_code == 2 and "--preset" in res.output
    res = runner.invoke(app, ["cache", "import", str(tmp_path / "f.pt"), "--preset", "s-s"])
    assert res.exit_code == 1 and "does not exist" in res.output and "Traceback" not in res.output
