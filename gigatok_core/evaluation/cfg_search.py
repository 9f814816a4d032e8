"""The official CFG search of ``sample_c2i_cfg_search.py --search`` (docs/evaluation.md#cfg-search).

A 1-D local search over the guidance scale: start from an empirical value per GPT and schedule,
then repeatedly take the lowest-FID scale tried so far and evaluate its neighbour ``best + 0.25``,
else ``best - 0.25`` (rectangular: minus first), never below 1.0; stop when both neighbours of the
best have been tried (a local minimum). Rows already in the results CSV (same schedule and
annotation) count as tried, so an interrupted search resumes where it stopped.

:func:`search_cfg` is pure (it only calls ``evaluate(scale) -> metrics``); :func:`run_gfid_search`
wires it to :func:`gigatok_core.evaluation.generation.evaluate_generation` with one sample
sub-folder per scale (same seeds for every scale) and the CSV beside the output.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gigatok_core import dist
from gigatok_core.ar.guidance import CFGSchedule
from gigatok_core.errors import GigatokError
from gigatok_core.runs.folder import RunFolder

STEP = 0.25
LOWER_BOUND = 1.0
CSV_COLUMNS = (
    "annotation",
    "cfg_scale",
    "cfg_schedule",
    "FID",
    "Inception Score",
    "Precision",
    "Recall",
    "sFID",
)
METRIC_COLUMNS = {
    "FID": "fid",
    "Inception Score": "is",
    "Precision": "precision",
    "Recall": "recall",
    "sFID": "sfid",
}


# ---------------------------------------------------------------------------------------------
# Start values and annotations (official `empirical_cfg_start`)
# ---------------------------------------------------------------------------------------------
def empirical_cfg_start(gpt: str, schedule: str, tokenizer: str | None = None) -> float:
    """The official first scale for a (GPT, schedule) pair; the constant value for other schedules."""
    size = gpt.split("@")[0].removeprefix("gpt-")  # gpt-b@xl-xxl -> b
    if schedule == "step":
        return {"b": 2.5, "l": 1.75}.get(size, 1.25)
    if schedule == "rectangular":
        return {"b": 3.0, "l": 2.5}.get(size, 1.75)
    if size == "b":  # constant (and the schedules the official search does not cover)
        tok = tokenizer or (
            gpt.split("@")[1] if "@" in gpt else "xl-xxl"
        )  # GPT-B's default pairing is xl-xxl
        return 1.75 if "xxl" in tok.lower() else 2.0
    return 1.75


def annotation(cfg: CFGSchedule) -> str:
    """The CSV's annotation column: the schedule's window arguments (empty for constant)."""
    if cfg.name == "step":
        return f"window_start={cfg.start:.2f}"
    if cfg.name in ("rectangular", "sigmoid"):
        return f"window_start={cfg.start:.2f};window_end={cfg.end:.2f}"
    return ""


# ---------------------------------------------------------------------------------------------
# The search itself (pure)
# ---------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    tried: dict[float, dict[str, Any]] = field(default_factory=dict)  # scale -> metrics, in order of trial
    evaluated: list[float] = field(default_factory=list)  # scales evaluated by this call (not from history)
    window: tuple[float, float] | None = None  # rectangular window of these results (window grid only)

    @property
    def best_scale(self) -> float:
        return min(self.tried, key=lambda s: _fid(self.tried[s]))

    @property
    def best(self) -> dict[str, Any]:
        return self.tried[self.best_scale]


def _key(scale: float) -> float:
    return round(scale, 4)


def _fid(metrics: dict[str, Any]) -> float:
    fid = metrics.get("fid")
    return float("inf") if fid is None else float(fid)


def search_cfg(
    evaluate: Callable[[float], dict[str, Any]],
    start: float,
    *,
    history: dict[float, dict[str, Any]] | None = None,
    step: float = STEP,
    lower_bound: float = LOWER_BOUND,
    minus_first: bool = False,
    max_rounds: int = 100,
) -> SearchResult:
    """Local search of the scale with the lowest ``evaluate(scale)["fid"]`` (see module doc).

    ``history`` holds scales already evaluated (e.g. from the CSV of an interrupted run).
    """
    if step <= 0:
        raise GigatokError(f"the CFG search step must be positive, got {step}")
    result = SearchResult(tried={_key(s): m for s, m in (history or {}).items()})
    if not result.tried:
        first = _key(max(start, lower_bound))
        result.tried[first] = evaluate(first)
        result.evaluated.append(first)
    for _ in range(max_rounds):
        best = result.best_scale
        neighbours = (
            [_key(best - step), _key(best + step)] if minus_first else [_key(best + step), _key(best - step)]
        )
        todo = [s for s in neighbours if s >= lower_bound - 1e-9 and s not in result.tried]
        if not todo:
            return result  # both neighbours tried (or out of bounds): a local minimum
        result.tried[todo[0]] = evaluate(todo[0])
        result.evaluated.append(todo[0])
    return result


# ---------------------------------------------------------------------------------------------
# The results CSV
# ---------------------------------------------------------------------------------------------
def results_csv(output: str | Path) -> Path:
    """Official location: ``dirname(output)/search_results/basename(output).csv``."""
    output = Path(output)
    return output.parent / "search_results" / f"{output.name}.csv"


# What makes two searches' results interchangeable, besides the schedule and its window (which the
# CSV rows carry): recorded beside the CSV, checked before any row is reused.
SEARCH_SETTINGS = (
    "gpt_checkpoint",
    "tokenizer_checkpoint",
    "seed",
    "precision",
    "num_per_class",
    "num_classes",
    "reference",
    "sampling",
    "sampler",  # set for --sampler sjd only
    "sjd_window",
)


def search_settings(gpt: str, tokenizer: str | None, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The settings of a search that its CSV rows depend on, JSON-ready."""
    out: dict[str, Any] = {"gpt": gpt, "tokenizer": tokenizer}
    for key in SEARCH_SETTINGS:
        value = gen_kwargs.get(key)
        if hasattr(value, "__dataclass_fields__"):
            value = {f: getattr(value, f) for f in value.__dataclass_fields__}
        out[key] = None if value is None else (value if isinstance(value, int | float | dict) else str(value))
    return out


def check_search_settings(csv_path: Path, settings: dict[str, Any], *, write: bool) -> None:
    """Refuse to reuse the rows of ``csv_path`` if they were made with other settings; record them
    (``<csv>.settings.json``, with the search's provenance) for a new CSV. A CSV without a record
    (e.g. the official script's) is reused as it is."""
    record = RunFolder(
        csv_path.parent,
        "CFG search",
        settings,
        settings_file=csv_path.with_suffix(".settings.json").name,
        outputs=(csv_path.name,),
        hint="choose another --output (the CSV is named after it), or move that CSV and its .settings.json away",
    )
    try:
        previous = record.previous()
    except GigatokError:
        previous = {}  # an unreadable record: every setting differs
    if previous is not None:
        record.refuse_if_different(previous, where=csv_path)
    elif write and not csv_path.is_file():
        record.write_settings()


def read_history(path: Path, cfg: CFGSchedule) -> dict[float, dict[str, Any]]:
    """Rows of the CSV with this schedule and annotation, as scale -> metrics."""
    if not path.is_file():
        return {}
    out: dict[float, dict[str, Any]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a CSV re-saved by a spreadsheet
        reader = csv.DictReader(f)
        missing = [
            c for c in ("annotation", "cfg_scale", "cfg_schedule") if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise GigatokError(
                f"{path} has no {', '.join(missing)} column(s) in its first line",
                hint="restore its header line (annotation,cfg_scale,cfg_schedule,...) or move the file away",
            )
        for row in reader:
            if row.get("cfg_schedule") != cfg.name or (row.get("annotation") or "") != annotation(cfg):
                continue
            try:
                out[_key(float(row["cfg_scale"]))] = {
                    key: (float(row[col]) if row.get(col) not in (None, "") else None)
                    for col, key in METRIC_COLUMNS.items()
                }
            except (KeyError, ValueError):
                raise GigatokError(
                    f"{path} has a malformed row: {row}",
                    hint="fix or move the file; it holds the results of earlier searches",
                ) from None
    return out


def append_row(path: Path, cfg: CFGSchedule, metrics: dict[str, Any]) -> None:
    """Append one result row (header when new), rewriting the file atomically."""
    from gigatok_core.utils.fileio import write_bytes_atomic

    old = path.read_text() if path.is_file() else ""
    buf = io.StringIO()
    writer = csv.writer(buf)
    if not old:
        writer.writerow(CSV_COLUMNS)
    elif not old.endswith("\n"):
        buf.write("\n")
    writer.writerow(
        [
            annotation(cfg),
            f"{cfg.scale:g}",
            cfg.name,
            *("" if metrics.get(k) is None else repr(float(metrics[k])) for k in METRIC_COLUMNS.values()),
        ]
    )
    write_bytes_atomic(path, (old + buf.getvalue()).encode())


# ---------------------------------------------------------------------------------------------
# gFID search
# ---------------------------------------------------------------------------------------------
def scale_folder(output: str | Path, cfg: CFGSchedule) -> Path:
    """The sample sub-folder of one scale, e.g. ``OUT/step-0.18-cfg-1.75``."""
    ann = annotation(cfg).replace("window_start=", "").replace("window_end=", "").replace(";", "-")
    return Path(output) / "-".join(x for x in (cfg.name, ann, f"cfg-{cfg.scale:.2f}") if x)


def run_gfid_search(
    gpt: str,
    *,
    output: str | Path,
    cfg: CFGSchedule,
    start: float | None = None,
    tokenizer: str | None = None,
    on_result: Callable[[float, dict[str, Any]], None] | None = None,
    window_grid: bool = False,
    **gen_kwargs: Any,
) -> SearchResult | None:
    """CFG search of gFID; each scale sampled into :func:`scale_folder` with the same seeds.

    ``gen_kwargs`` go to :func:`~gigatok_core.evaluation.generation.evaluate_generation`
    (evaluator, reference, num_per_class, seed, ...). Every rank takes part in sampling; rank 0
    scores, appends to the CSV and shares the numbers so all ranks take the same next step.
    Returns the result on the main rank, ``None`` on the others. ``window_grid`` (rectangular
    schedule) repeats the search over :func:`rectangular_windows` as the official script does.
    """
    if gen_kwargs.get("save_npz") is not None:
        raise GigatokError(
            "--save-npz packs one CFG value, not a search",
            hint="after the search, run gfid with --cfg-scale BEST and --output on that value's "
            "sub-folder plus --save-npz (its samples are reused)",
        )
    start = empirical_cfg_start(gpt, cfg.name, tokenizer) if start is None else start
    csv_path = results_csv(output)
    ctx = gen_kwargs.get("ctx") or dist.get_context(init=False)
    check_search_settings(csv_path, search_settings(gpt, tokenizer, gen_kwargs), write=ctx.is_main)
    if window_grid:
        best = search_window_grid(
            lambda sched, first: _search(
                gpt, output, sched, first, tokenizer, on_result, csv_path, ctx, gen_kwargs
            ),
            cfg,
            start,
        )
        return best if ctx.is_main else None
    result = _search(gpt, output, cfg, start, tokenizer, on_result, csv_path, ctx, gen_kwargs)
    return result if ctx.is_main else None


def _search(
    gpt: str,
    output: str | Path,
    cfg: CFGSchedule,
    start: float,
    tokenizer: str | None,
    on_result: Callable[[float, dict[str, Any]], None] | None,
    csv_path: Path,
    ctx: dist.DistContext,
    gen_kwargs: dict[str, Any],
) -> SearchResult:
    """One CFG search for one schedule (every rank takes part and gets the same result)."""
    from gigatok_core.evaluation.generation import evaluate_generation

    history = read_history(csv_path, cfg)

    def evaluate(scale: float) -> dict[str, Any]:
        this = CFGSchedule(
            scale, cfg.name, window_start=cfg.window_start, window_end=cfg.window_end, interval=cfg.interval
        )
        metrics = evaluate_generation(
            gpt, output=scale_folder(output, this), tokenizer=tokenizer, cfg=this, **gen_kwargs
        )
        if ctx.is_main:
            assert metrics is not None
            append_row(csv_path, this, metrics)
            if on_result:
                on_result(scale, metrics)
        metrics = ctx.broadcast_object(metrics)  # rank 0's numbers: every rank takes the same next step
        return metrics or {}  # a hand-split non-main rank has no numbers: FID counts as inf

    return search_cfg(evaluate, start, history=history, minus_first=cfg.name == "rectangular")


# ---------------------------------------------------------------------------------------------
# Rectangular window grid (official: a CFG search per (window_start, window_end) pair)
# ---------------------------------------------------------------------------------------------
def rectangular_windows() -> list[tuple[float, float]]:
    """The official grid: starts 0.10..0.80 and ends 0.50..1.00 in steps of 0.05, start < end."""
    starts = [round(0.10 + 0.05 * i, 2) for i in range(15)]
    ends = [round(0.50 + 0.05 * i, 2) for i in range(11)]
    return [(a, b) for a in starts for b in ends if a < b]


def search_window_grid(
    search: Callable[[CFGSchedule, float], SearchResult],
    cfg: CFGSchedule,
    start: float,
    windows: list[tuple[float, float]] | None = None,
) -> SearchResult:
    """A CFG search per rectangular window, each starting from the previous window's best scale.

    ``search(schedule, start)`` runs one search; returns the result of the best window (lowest FID),
    with its ``window`` set.
    """
    if cfg.name != "rectangular":
        raise GigatokError(
            "the window grid is for the rectangular schedule", hint="pass --cfg-schedule rectangular"
        )
    best: SearchResult | None = None
    for ws, we in windows or rectangular_windows():
        this = CFGSchedule(start, "rectangular", window_start=ws, window_end=we, interval=cfg.interval)
        result = search(this, start)
        result.window = (ws, we)
        start = result.best_scale
        if best is None or _fid(result.best) < _fid(best.best):
            best = result
    assert best is not None, "empty window grid"
    return best
