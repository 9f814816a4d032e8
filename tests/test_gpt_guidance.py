"""Every CFG schedule's curve (docs/ar.md#cfg-schedules table) and ImageNet class parsing."""

from __future__ import annotations

import itertools
import math

import pytest

from gigatok_core.ar import SCHEDULES, CFGSchedule, parse_classes, resolve_class
from gigatok_core.ar.guidance import OFF
from gigatok_core.errors import GigatokError

N = 256


def curve(name: str, s: float = 3.0, **kw) -> list[float]:
    return CFGSchedule(s, name, **kw).per_token(N)


@pytest.mark.parametrize("name", SCHEDULES)
def test_first_token_uses_raw_scale(name: str) -> None:
    assert curve(name)[0] == 3.0
    assert len(curve(name)) == N


def test_constant_linear_and_reverse() -> None:
    assert set(curve("constant")) == {3.0}
    lin, rev = curve("linear"), curve("linear_re")
    assert lin[1] == pytest.approx(1 + 2 * (1 / 255) + 1e-4) and lin[-1] == pytest.approx(3.0 + 1e-4)
    assert rev[1] == pytest.approx(1 + 2 * (254 / 255) + 1e-4) and rev[-1] == pytest.approx(1.0 + 1e-4)
    assert all(a < b for a, b in itertools.pairwise(lin[1:]))


def test_triangular_peaks_in_the_middle() -> None:
    tri = curve("triangular")
    peak = max(range(1, N), key=lambda j: tri[j])
    assert peak in (127, 128) and tri[peak] == pytest.approx(3.0, abs=0.02)
    assert tri[1] == pytest.approx(1 + 2 * (1 / 255) / 0.5 + 1e-4)
    assert tri[-1] == pytest.approx(1 + 1e-4)


def test_step_018_switches_at_token_46() -> None:
    step = curve("step", 1.75)
    assert step[0] == 1.75
    assert all(v == OFF for v in step[1:46])
    assert all(v == 1.75 for v in step[46:])
    assert set(curve("step", 1.0)) == {1.0}


def test_rectangular_window() -> None:
    rect = curve("rectangular", window_start=0.2, window_end=0.6)
    on = [j for j in range(1, N) if rect[j] == 3.0]
    assert on == [j for j in range(1, N) if 0.2 <= j / 255 <= 0.6]
    assert all(rect[j] == OFF for j in range(1, N) if j not in on)
    assert CFGSchedule(3.0, "rectangular").start == 0.05


def test_cosine_decays_from_scale_to_one() -> None:
    cos = curve("cosine")
    assert cos[1] == pytest.approx(1 + 2 * 0.5 * (1 + math.cos(math.pi / 255)))
    assert cos[-1] == pytest.approx(1.0)
    assert cos[128] == pytest.approx(1 + 2 * 0.5 * (1 + math.cos(math.pi * 128 / 255)))


def test_sigmoid_is_a_smooth_step() -> None:
    sig = curve("sigmoid")
    assert all(a <= b for a, b in itertools.pairwise(sig[1:]))
    assert CFGSchedule(3.0, "sigmoid").value(0.0) == pytest.approx(1.0)
    assert sig[-1] == pytest.approx(3.0)
    mid = CFGSchedule(3.0, "sigmoid").value(0.18)
    assert 1.5 < mid < 2.5  # half-way at the centre (the step schedule's start)


def test_guidance_off_and_interval() -> None:
    assert not CFGSchedule(1.0).enabled and CFGSchedule(1.0001).enabled
    sched = CFGSchedule(2.0, interval=10)
    assert sched.uses_uncond(10) and not sched.uses_uncond(11)
    with pytest.raises(GigatokError):
        CFGSchedule(-1.0)
    with pytest.raises(GigatokError):
        CFGSchedule(2.0, "step", window_start=1.5)


# ---------------------------------------------------------------------------------------------
# Classes
# ---------------------------------------------------------------------------------------------
def test_classes_by_index_and_name() -> None:
    assert parse_classes("22,388") == [22, 388]
    assert parse_classes("giant panda, Bald Eagle") == [388, 22]
    assert parse_classes([5, "giant panda"]) == [5, 388]
    assert resolve_class("Cardigan") == 264  # exact case decides between the two 'cardigan's


@pytest.mark.parametrize(
    ("item", "message", "hint"),
    [
        ("1000", "outside 0-999", "0-999"),
        ("-3", "outside 0-999", "0-999"),
        ("giant pand", "unknown ImageNet class", "388 (giant panda)"),
        ("bald egle", "unknown ImageNet class", "22 (bald eagle)"),
        ("CARDIGAN", "ambiguous", "264"),
    ],
)
def test_bad_classes(item: str, message: str, hint: str) -> None:
    with pytest.raises(GigatokError, match=message) as err:
        resolve_class(item)
    assert hint in (err.value.hint or "")


def test_empty_class_list() -> None:
    with pytest.raises(GigatokError, match="no classes"):
        parse_classes(" , ")
