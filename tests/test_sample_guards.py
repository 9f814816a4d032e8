"""Sampling never mixes runs, fails before it writes, and reads class lists and CFG options strictly."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gigatok_cli.main import app
from gigatok_core.ar import CFGSchedule, SamplingParams
from gigatok_core.ar.classes import parse_classes, resolve_class
from gigatok_core.dist import resolve_device
from gigatok_core.errors import GigatokError
from gigatok_core.tasks.sample import PARTIAL_CODES, SETTINGS_FILE, sample_images

pytestmark = pytest.mark.usefixtures("one_thread")
KW = {
    "gpt": "gpt-tiny",
    "cfg": CFGSchedule(2.0, "step"),
    "device": "cpu",
    "sampling": SamplingParams(top_k=50),
}


def _codes(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "codes.npz") as z:
        return {str(n): c for n, c in zip(z["names"], z["codes"], strict=True)}


# ---------------------------------------------------------------------------------------------
# Runs in one folder
# ---------------------------------------------------------------------------------------------
def test_overwrite_removes_the_previous_run_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sample_images("22", output=out, num_per_class=3, seed=0, save_codes=True, **KW)
    # what an interrupted earlier run leaves: codes of its batches in the partial folder
    (out / PARTIAL_CODES).mkdir()
    np.savez(
        out / PARTIAL_CODES / "022_bald-eagle_0000.r0.npz",
        names=np.array(["022_bald-eagle_0000"]),
        codes=np.zeros((1, 256), np.int64),
    )
    sample_images("22", output=out, num_per_class=2, seed=1, save_codes=True, overwrite=True, **KW)
    assert sorted(p.name for p in out.glob("*.png")) == ["022_bald-eagle_0000.png", "022_bald-eagle_0001.png"]
    fresh = tmp_path / "fresh"
    sample_images("22", output=fresh, num_per_class=2, seed=1, save_codes=True, **KW)
    got, want = _codes(out), _codes(fresh)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    assert not (out / PARTIAL_CODES).exists()


def test_summaries_are_not_rewritten_without_samples_they_held(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sample_images("22,388", output=out, num_per_class=1, save_codes=True, **KW)
    with pytest.raises(GigatokError, match="covers samples this run does not include"):
        sample_images("388", output=out, num_per_class=1, save_codes=True, **KW)
    assert set(_codes(out)) == {"022_bald-eagle_0000", "388_giant-panda_0000"}
    sample_images("22,388,90", output=out, num_per_class=1, save_codes=True, **KW)  # a superset is fine
    assert len(_codes(out)) == 3


def test_a_run_that_cannot_start_leaves_no_settings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / "not_a_checkpoint.pt").write_text("hello")
    with pytest.raises(GigatokError, match=r"not a (readable )?PyTorch checkpoint"):
        sample_images("22", output=out, tokenizer_checkpoint=tmp_path / "not_a_checkpoint.pt", **KW)
    assert not (out / SETTINGS_FILE).exists()
    result = sample_images("22", output=out, **KW)  # the corrected command is not blocked
    assert len(result.generated) == 1


def test_pngs_do_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    sample_images("22,388", output=tmp_path / "b1", num_per_class=2, batch_size=1, **KW)
    sample_images("22,388", output=tmp_path / "b3", num_per_class=2, batch_size=3, **KW)
    for png in sorted((tmp_path / "b1").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "b3" / png.name).read_bytes(), png.name


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors, nothing written
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": 10**30}, "seed must lie in"),
        ({"seed": -1}, "seed must lie in"),
        ({"device": "meta"}, "not supported"),
    ],
)
def test_bad_options_fail_before_anything_is_written(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(GigatokError, match=message):
        sample_images("22", output=tmp_path / "out", **{**KW, **kwargs})
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_output_folder_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    res = CliRunner().invoke(
        app,
        [
            "sample",
            "--gpt",
            "gpt-tiny",
            "--classes",
            "22",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "afile" / "o"),
        ],
    )
    assert (
        res.exit_code == 1
        and "cannot create the output folder" in res.output
        and "Traceback" not in res.output
    )


def test_only_cpu_and_cuda_devices() -> None:
    for name in ("meta", "mps", "xpu"):
        with pytest.raises(GigatokError, match="not supported"):
            resolve_device(name)


def test_class_lists(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gigatok"):
        assert resolve_class("crane") == 517 and resolve_class("Crane bird") == 134
        assert parse_classes("22, 22 ,388") == [22, 388]
    notes = " ".join(r.getMessage() for r in caplog.records)
    assert "134 (crane bird)" in notes and "listed more than once are sampled once: 22" in notes
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gigatok"):
        assert parse_classes("388,1,2,1") == [388, 1, 2]
    notes = " ".join(r.getMessage() for r in caplog.records)
    assert notes.endswith("sampled once: 1")  # only the repeated class, not every class
    with pytest.raises(GigatokError) as err:
        resolve_class("panda")
    assert err.value.hint.startswith("closest matches: 387 (lesser panda), 388 (giant panda)")
    with pytest.raises(GigatokError, match="unknown ImageNet class"):
        resolve_class("²")  # a digit to str.isdigit, not a number


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "rectangular", "window_start": 0.9, "window_end": 0.1}, "starts after it ends"),
        ({"name": "constant", "window_start": 0.5}, "--cfg-start-ratio has no effect with the constant"),
        ({"name": "step", "window_end": 0.5}, "--cfg-end-ratio has no effect with the step"),
    ],
)
def test_cfg_options_that_would_be_ignored_or_empty_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(GigatokError, match=message):
        CFGSchedule(2.0, **kwargs)


def test_grid_says_what_it_leaves_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gigatok"):
        sample_images("22", output=tmp_path / "o", num_per_class=9, grid=True, batch_size=9, **KW)
    assert any("8 samples of each (of 1 classes, 9 each)" in r.getMessage() for r in caplog.records)


def test_decoding_uses_one_batch_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import gigatok_core.tasks.sample as sample_mod
    from gigatok_core.tokenizer import load_tokenizer

    tok = load_tokenizer("tiny")
    shapes: list[int] = []
    real = tok.decode_codes
    monkeypatch.setattr(tok, "decode_codes", lambda c: shapes.append(len(c)) or real(c))
    monkeypatch.setattr(sample_mod, "decode_chunk", lambda device: 3)
    codes = torch.randint(
        0, tok.config.codebook_size, (5, tok.num_tokens), generator=torch.Generator().manual_seed(0)
    )
    every = sample_mod.decode_fixed_batches(tok, codes)
    tail = sample_mod.decode_fixed_batches(tok, codes[3:])  # e.g. a resumed run's last two images
    assert shapes == [3, 3, 3] and every.shape == (5, 256, 256, 3)
    np.testing.assert_array_equal(every[3:], tail)


def test_pixels_across_thread_counts_stay_within_one_level() -> None:
    """The README's guarantee: the same codes decode to the same pixels on the same device and
    thread count; another thread count (a torchrun worker runs one) moves a pixel by one level at most."""
    import torch

    import gigatok_core.tasks.sample as sample_mod
    from gigatok_core.tokenizer import load_tokenizer

    tok = load_tokenizer("tiny")
    codes = torch.randint(
        0, tok.config.codebook_size, (1, tok.num_tokens), generator=torch.Generator().manual_seed(1)
    )
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = sample_mod.decode_fixed_batches(tok, codes).astype(int)
        np.testing.assert_array_equal(one, sample_mod.decode_fixed_batches(tok, codes))  # same threads
        torch.set_num_threads(2)
        two = sample_mod.decode_fixed_batches(tok, codes).astype(int)
    finally:
        torch.set_num_threads(threads)
    assert np.abs(one - two).max() <= 1
