"""What a new user passes by mistake as a checkpoint: clear one-line errors, never a traceback.

An interrupted manual download leaves a 0-byte or truncated file; a folder is easy to pass by
accident (issue 9 §6). Checked through the CLI, where the user meets them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gigatok_cli.main import app

runner = CliRunner()


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    np.savez(tmp_path / "ref.npz", arr_0=np.zeros((2, 64, 64, 3), np.uint8))
    (tmp_path / "empty.pt").write_bytes(b"")
    full = tmp_path / "full.pt"
    torch.save({"model": {"w": torch.zeros(4096)}}, full)
    data = full.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "folder").mkdir()
    return tmp_path


def _fails_cleanly(args: list[str], *expected: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, IndexError)
    text = " ".join(res.output.split())  # rich wraps long lines
    for part in expected:
        assert part in text, text
    return text


def _reconstruct(d: Path, checkpoint: Path) -> list:
    return ["reconstruct", d / "imgs" / "a.png", "-t", "tiny", "--checkpoint", checkpoint, "-o", d / "out"]


def test_empty_checkpoint_files(inputs: Path) -> None:
    d = inputs
    _fails_cleanly(_reconstruct(d, d / "empty.pt"), "is empty (0 bytes)", "interrupted download")
    _fails_cleanly(
        ["sample", "--gpt", "gpt-tiny", "--gpt-checkpoint", d / "empty.pt", "-c", "1", "-o", d / "s"],
        "GPT checkpoint",
        "is empty (0 bytes)",
    )
    _fails_cleanly(
        ["eval", "fid", d / "imgs", d / "ref.npz", "--inception-weights", d / "empty.pt"],
        "is empty (0 bytes)",
    )


def test_truncated_checkpoint_message_is_whole(inputs: Path) -> None:
    text = _fails_cleanly(
        _reconstruct(inputs, inputs / "truncated.pt"), "is not a readable PyTorch checkpoint"
    )
    reason = text.split("is not a readable PyTorch checkpoint (", 1)[1].split(")", 1)[0]
    assert reason and not reason.endswith(("is", "the", "that", "your")), reason  # not cut mid-sentence
    assert "hint: the file may be truncated" in text


def test_a_folder_is_named_as_a_folder(inputs: Path) -> None:
    d = inputs
    for args in (
        _reconstruct(d, d / "folder"),
        ["sample", "--gpt", "gpt-tiny", "--gpt-checkpoint", d / "folder", "-c", "1", "-o", d / "s"],
    ):
        text = _fails_cleanly(args, "is a folder", "checkpoints/")
        assert "does not exist" not in text
    text = _fails_cleanly(
        ["eval", "fid", d / "imgs", d / "ref.npz", "--inception-weights", d / "folder"], "is a folder"
    )
    assert "does not exist" not in text
