"""Training checkpoints: atomic step folders, a `latest` pointer written last, keep, fallback, full disk."""

from __future__ import annotations

import errno
import json
import logging

import pytest
import torch

from gigatok_core.checkpoints import training as ck
from gigatok_core.checkpoints.files import read_weights_meta
from gigatok_core.checkpoints.training import load_checkpoint, save_checkpoint
from gigatok_core.errors import GigatokError


def _save(root, step, keep=None, value=None):
    value = float(step) if value is None else value
    weights = {
        "model": {"w": torch.full((2, 3), value), "b": torch.zeros(3)},
        "ema": {"w": torch.full((2, 3), value + 0.5), "b": torch.ones(3)},
    }
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], betas=(0.9, 0.95))
    state = {
        "step": step,
        "optimizer": opt.state_dict(),
        "rng": [{"torch": torch.get_rng_state(), "python": [3, list(range(5)), None]}],
        "data": {"epoch": 1, "position": 64},
    }
    meta = {"step": step, "config": {"model": {"dim": 8}}, "world_size": 2, "kind": "gpt"}
    return save_checkpoint(root, weights=weights, state=state, meta=meta, keep=keep)


def test_round_trip_layout_and_meta(tmp_path):
    root = tmp_path / "checkpoints"
    folder = _save(root, 7)
    assert folder == root / "step-00000007"
    assert sorted(p.name for p in folder.iterdir()) == [
        "ema.safetensors",
        "meta.json",
        "model.safetensors",
        "state.pt",
    ]
    assert (root / "latest").read_text().strip() == "step-00000007"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["step"] == 7 and meta["world_size"] == 2 and meta["groups"] == ["ema", "model"]
    assert meta["config"] == {"model": {"dim": 8}} and meta["gigatok_version"]
    assert read_weights_meta(folder / "ema.safetensors")["group"] == "ema"
    torch.load(folder / "state.pt", weights_only=True)  # plain data only

    for where in (tmp_path, root, folder):  # run folder, checkpoints/, a step folder
        got = load_checkpoint(where)
        assert got.path == folder and got.meta["step"] == 7
        assert torch.equal(got.weights["ema"]["w"], torch.full((2, 3), 7.5))
        assert got.state["data"] == {"epoch": 1, "position": 64}
        assert got.state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    only = load_checkpoint(tmp_path, groups=["ema", "disc"], with_state=False)
    assert list(only.weights) == ["ema"] and only.state == {}


def test_latest_moves_and_keep_prunes(tmp_path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep=2)
    assert [p.name for p in ck.checkpoint_dirs(tmp_path)] == ["step-00000003", "step-00000004"]
    assert load_checkpoint(tmp_path).meta["step"] == 4
    # saving the same step again (a resumed run) replaces it
    _save(tmp_path, 4, value=40.0)
    assert torch.equal(load_checkpoint(tmp_path).weights["model"]["w"], torch.full((2, 3), 40.0))


def test_partial_checkpoint_never_becomes_latest(tmp_path, monkeypatch):
    _save(tmp_path, 1)

    def crash(*a, **k):
        raise KeyboardInterrupt  # killed while writing state.pt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 2)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["latest", "step-00000001"]
    assert load_checkpoint(tmp_path).meta["step"] == 1


def test_corrupt_latest_falls_back_with_a_note(tmp_path, caplog):
    _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger="gigatok"):
        got = load_checkpoint(tmp_path)
    assert got.meta["step"] == 1
    assert "step-00000001" in caplog.text and "unreadable" in caplog.text
    with pytest.raises(GigatokError, match="not a readable checkpoint"):
        load_checkpoint(newest)  # named explicitly: no silent substitute
    (tmp_path / "step-00000001" / "state.pt").write_bytes(b"garbage")
    with pytest.raises(GigatokError, match=r"no checkpoint .* is readable"):
        load_checkpoint(tmp_path)


def test_full_disk_is_a_clear_error_and_keeps_the_previous(tmp_path, monkeypatch):
    _save(tmp_path, 1)
    real = ck.save_weights

    def full(path, tensors, meta):
        if meta["group"] == "ema":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, tensors, meta)

    monkeypatch.setattr(ck, "save_weights", full)
    with pytest.raises(GigatokError, match="disk is full") as info:
        _save(tmp_path, 2)
    assert "step-00000001 is intact" in str(info.value)
    assert not list(tmp_path.glob(".step-*"))  # the temp folder is cleaned up
    assert [p.name for p in ck.checkpoint_dirs(tmp_path)] == ["step-00000001"]
    assert load_checkpoint(tmp_path).meta["step"] == 1


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(GigatokError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(GigatokError, match="holds no training checkpoint"):
        load_checkpoint(tmp_path)


def test_state_that_weights_only_cannot_read_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="weights_only"):
        save_checkpoint(tmp_path, weights={}, state={"bad": object()}, meta={"step": 0})
    assert not tmp_path.joinpath("latest").exists()
