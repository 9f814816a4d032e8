"""The official CFG search as a pure function, its CSV, and `gigatok eval gfid --search` wiring."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.ar.guidance import CFGSchedule
from gigatok_core.errors import GigatokError
from gigatok_core.evaluation.cfg_search import (
    CSV_COLUMNS,
    annotation,
    append_row,
    empirical_cfg_start,
    read_history,
    rectangular_windows,
    results_csv,
    scale_folder,
    search_cfg,
    search_window_grid,
)


def _curve(minimum: float, calls: list[float]):
    def evaluate(scale: float) -> dict:
        calls.append(scale)
        return {
            "fid": (scale - minimum) ** 2 + 3.0,
            "is": 100.0 - scale,
            "precision": 0.5,
            "recall": 0.6,
            "sfid": 5.0,
        }

    return evaluate


# ---------------------------------------------------------------------------------------------
# The pure search
# ---------------------------------------------------------------------------------------------
def test_search_walks_up_to_the_minimum_and_stops_when_both_neighbours_are_tried() -> None:
    calls: list[float] = []
    res = search_cfg(_curve(2.6, calls), 1.75)
    assert calls == [1.75, 2.0, 2.25, 2.5, 2.75]  # plus first; 2.75 is worse, 2.25 already tried -> stop
    assert res.best_scale == 2.5 and res.evaluated == calls
    assert res.best["fid"] == pytest.approx(3.01)


def test_search_walks_down_and_respects_the_lower_bound() -> None:
    calls: list[float] = []
    res = search_cfg(_curve(1.3, calls), 2.0)
    assert calls == [2.0, 2.25, 1.75, 1.5, 1.25, 1.0]
    assert res.best_scale == 1.25
    calls.clear()
    res = search_cfg(_curve(-5.0, calls), 1.5)  # FID grows with the scale: ends at the bound, never below
    assert calls == [1.5, 1.75, 1.25, 1.0] and res.best_scale == 1.0


def test_search_resumes_from_history_and_rectangular_tries_minus_first() -> None:
    calls: list[float] = []
    history = {1.75: {"fid": 9.0}, 2.0: {"fid": 8.0}}
    res = search_cfg(_curve(2.6, calls), 1.75, history=history)
    assert (
        calls == [2.25, 2.5, 2.75]
        and res.best_scale == 2.5
        and set(res.tried) == {1.75, 2.0, 2.25, 2.5, 2.75}
    )
    calls.clear()
    search_cfg(_curve(2.6, calls), 3.0, minus_first=True)
    assert calls == [3.0, 2.75, 2.5, 2.25]


def test_empirical_start_values() -> None:
    assert empirical_cfg_start("gpt-b", "step") == 2.5
    assert empirical_cfg_start("gpt-l", "step") == 1.75
    assert empirical_cfg_start("gpt-xxl@xl-xxl", "step") == 1.25
    assert empirical_cfg_start("gpt-b@xl-xxl", "constant") == 1.75
    assert empirical_cfg_start("gpt-b", "constant", tokenizer="b-l") == 2.0
    assert empirical_cfg_start("gpt-xl", "constant") == 1.75
    assert (
        empirical_cfg_start("gpt-b", "rectangular") == 3.0
        and empirical_cfg_start("gpt-l", "rectangular") == 2.5
    )


def test_csv_rows_round_trip_and_are_filtered_by_schedule_and_annotation(tmp_path: Path) -> None:
    path = results_csv(tmp_path / "samples" / "run1")
    assert path == tmp_path / "samples" / "search_results" / "run1.csv"
    step = CFGSchedule(1.75, "step", window_start=0.18)
    append_row(path, step, {"fid": 3.5, "is": 200.0, "precision": 0.8, "recall": 0.5, "sfid": 6.0})
    append_row(path, CFGSchedule(2.0, "step", window_start=0.3), {"fid": 1.0})
    append_row(path, CFGSchedule(2.0, "constant"), {"fid": 2.0, "is": None})
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1][:3] == ["window_start=0.18", "1.75", "step"] and rows[3][:3] == ["", "2", "constant"]
    assert read_history(path, step) == {
        1.75: {"fid": 3.5, "is": 200.0, "precision": 0.8, "recall": 0.5, "sfid": 6.0}
    }
    assert read_history(path, CFGSchedule(9.0, "constant")) == {
        2.0: {"fid": 2.0, "is": None, "precision": None, "recall": None, "sfid": None}
    }
    assert annotation(CFGSchedule(2.0, "constant")) == ""
    assert scale_folder(tmp_path, step).name == "step-0.18-cfg-1.75"


# ---------------------------------------------------------------------------------------------
# The CLI: one sub-folder per scale, same seed, CSV, resume, best printed
# ---------------------------------------------------------------------------------------------
def test_gfid_search_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gigatok_core.evaluation.generation as gen_mod

    seen: list[dict] = []

    def fake_eval(gpt, *, output, cfg, **kw):
        seen.append(
            {
                "output": output,
                "scale": cfg.scale,
                "schedule": cfg.name,
                "seed": kw["seed"],
                "num_classes": kw["num_classes"],
            }
        )
        return {"fid": (cfg.scale - 2.1) ** 2 + 1.0, "sfid": 4.0, "is": 50.0, "precision": 0.5, "recall": 0.4}

    monkeypatch.setattr(gen_mod, "evaluate_generation", fake_eval)
    out = tmp_path / "samples" / "tiny"
    args = [
        "eval",
        "gfid",
        "--gpt",
        "gpt-tiny",
        "--output",
        str(out),
        "--search",
        "--num-classes",
        "2",
        "--num-per-class",
        "1",
        "--seed",
        "7",
        "--json",
        str(tmp_path / "s.json"),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert [s["scale"] for s in seen] == [
        1.25,
        1.5,
        1.75,
        2.0,
        2.25,
    ]  # step schedule, "other" GPT: start 1.25
    assert {s["seed"] for s in seen} == {7} and {s["num_classes"] for s in seen} == {2}
    assert len({s["output"] for s in seen}) == 5 and all(Path(s["output"]).parent == out for s in seen)
    assert "best cfg 2" in res.output
    got = json.loads((tmp_path / "s.json").read_text())
    assert got["cfg_scale"] == 2.0 and got["fid"] == pytest.approx(1.01)
    with results_csv(out).open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["cfg_scale"]) for r in rows] == [1.25, 1.5, 1.75, 2.0, 2.25]
    assert {r["annotation"] for r in rows} == {"window_start=0.18"} and float(
        rows[3]["FID"]
    ) == pytest.approx(1.01)
    # a second run resumes from the CSV: nothing left to evaluate, same answer
    seen.clear()
    res = CliRunner().invoke(app, [*args[:-2], "--json", str(tmp_path / "s2.json")])
    assert res.exit_code == 0, res.output
    assert seen == [] and json.loads((tmp_path / "s2.json").read_text())["cfg_scale"] == 2.0
    # the same --output with another seed or sample count must not reuse those rows
    for change in (["--seed", "8"], ["--num-per-class", "2"]):
        i = args.index(change[0])
        other = [*args[:i], *change, *args[i + 2 : -2]]
        res = CliRunner().invoke(app, other)
        assert res.exit_code == 1 and "search with other settings" in res.output, res.output
        assert change[0].strip("-").replace("-", "_") in res.output and seen == []

    # --save-npz packs one scale, not a search
    res = CliRunner().invoke(app, [*args[:-2], "--save-npz", str(tmp_path / "x.npz")])
    assert res.exit_code == 1 and "--save-npz" in res.output


# ---------------------------------------------------------------------------------------------
# Rectangular window grid
# ---------------------------------------------------------------------------------------------
def test_rectangular_window_grid_is_the_official_grid() -> None:
    windows = rectangular_windows()
    starts = {a for a, _ in windows}
    ends = {b for _, b in windows}
    assert min(starts) == 0.1 and max(starts) == 0.8 and min(ends) == 0.5 and max(ends) == 1.0
    assert all(a < b for a, b in windows) and len(set(windows)) == len(windows)
    # 15 starts x 11 ends, minus the pairs with start >= end (starts 0.50..0.80 against low ends)
    expect = sum(1 for i in range(15) for j in range(11) if 10 + 5 * i < 50 + 5 * j)
    assert len(windows) == expect


def test_window_grid_chains_starts_and_returns_the_best_window() -> None:
    seen: list[tuple[tuple[float, float], float]] = []

    def search(sched: CFGSchedule, start: float):
        seen.append(((sched.window_start, sched.window_end), start))
        best_here = 1.5 + sched.window_start  # each window has its own optimum scale
        depth = abs(sched.window_start - 0.3) + abs(sched.window_end - 0.9)  # best window: 0.3-0.9
        return search_cfg(lambda s: {"fid": (s - best_here) ** 2 + depth}, start)

    grid = [(0.1, 0.9), (0.3, 0.9), (0.3, 1.0)]
    best = search_window_grid(search, CFGSchedule(3.0, "rectangular"), 3.0, grid)
    assert best.window == (0.3, 0.9)
    assert [w for w, _ in seen] == grid
    # each window starts from the previous window's best scale (optima 1.6 -> 1.5 and 1.8 -> 1.75 on the grid)
    assert [start for _, start in seen] == [3.0, pytest.approx(1.5), pytest.approx(1.75)]
    with pytest.raises(GigatokError, match="rectangular"):
        search_window_grid(search, CFGSchedule(3.0, "step"), 3.0, grid)


def test_window_grid_cli_needs_rectangular_search(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["eval", "gfid", "--gpt", "gpt-tiny", "--output", str(tmp_path / "o"), "--window-grid"]
    )
    assert res.exit_code == 1 and "--window-grid" in res.output


def test_csv_saved_by_a_spreadsheet_or_without_header(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    step = CFGSchedule(1.75, "step", window_start=0.18)
    append_row(path, step, {"fid": 3.0})
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # UTF-8 BOM, as Excel saves
    assert read_history(path, step) == {
        1.75: {"fid": 3.0, "is": None, "precision": None, "recall": None, "sfid": None}
    }
    path.write_text("\n".join(path.read_text(encoding="utf-8-sig").splitlines()[1:]) + "\n")  # header gone
    with pytest.raises(GigatokError, match="no annotation, cfg_scale, cfg_schedule column"):
        read_history(path, step)
