"""The golden files: in the repository, read through one place, redirectable with GIGATOK_FIXTURES.

A wrong file in the folder that ``GIGATOK_FIXTURES`` names must make the golden tests fail: the
redirect is only worth something if the tests really read the files it points at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, FIXTURES_ENV, REPO, fixture_path, fixtures_dir

GOLDEN = sorted(p.name for p in FIXTURES.iterdir() if p.is_file())


def test_the_golden_files_are_in_the_repository_and_documented() -> None:
    assert {
        "tok_SS_golden.pt",
        "tok_SS_train_golden.pt",
        "gpt_B_golden.pt",
        "tok_state_dict_keys.json",
        "gpt_state_dict_keys.json",
        "fid_inception_keys.json",
    } <= set(GOLDEN)
    page = (REPO / "docs" / "contributing.md").read_text()
    undocumented = [name for name in GOLDEN if f"`{name}`" not in page]
    assert not undocumented, f"docs/contributing.md does not describe {undocumented}"
    binary = (REPO / ".gitattributes").read_text()
    assert re.search(r"^tests/fixtures/\*\* binary$", binary, re.M)


def test_every_golden_read_goes_through_fixture_path() -> None:
    """No test opens a golden file by another path (which GIGATOK_FIXTURES would not redirect)."""
    offenders = []
    for test in sorted((REPO / "tests").glob("*.py")):
        for line_no, line in enumerate(test.read_text().splitlines(), 1):
            for name in GOLDEN:
                if name in line and "fixture_path(" not in line and test.name != "test_fixtures.py":
                    if not line.lstrip().startswith(("#", '"""')) and '"""' not in line:
                        offenders.append(f"{test.name}:{line_no}")
    assert not offenders


def test_golden_pt_files_load_with_weights_only() -> None:
    for name in GOLDEN:
        if name.endswith(".pt"):
            g = torch.load(fixture_path(name), map_location="cpu", weights_only=True)
            assert isinstance(g, dict) and g


def test_the_variable_redirects_and_a_missing_file_is_a_clear_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FIXTURES_ENV, str(tmp_path))
    assert fixtures_dir() == tmp_path
    (tmp_path / "gpt_state_dict_keys.json").write_text("{}")
    assert fixture_path("gpt_state_dict_keys.json") == tmp_path / "gpt_state_dict_keys.json"
    with pytest.raises(pytest.fail.Exception, match=r"missing from .*GIGATOK_FIXTURES.*git checkout"):
        fixture_path("tok_SS_golden.pt")
    monkeypatch.delenv(FIXTURES_ENV)
    assert fixtures_dir() == FIXTURES


def _pytest(folder: Path, *nodes: str) -> subprocess.CompletedProcess:
    env = {**os.environ, FIXTURES_ENV: str(folder), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *nodes]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.spawn
def test_a_wrong_golden_file_in_the_redirected_folder_fails_the_golden_tests(tmp_path: Path) -> None:
    """The same golden tests pass on an exact copy of the files and fail on a perturbed copy."""
    exact, wrong = tmp_path / "exact", tmp_path / "wrong"
    for folder in (exact, wrong):
        folder.mkdir()
        shutil.copyfile(fixture_path("gpt_B_golden.pt"), folder / "gpt_B_golden.pt")
        shutil.copyfile(fixture_path("gpt_state_dict_keys.json"), folder / "gpt_state_dict_keys.json")
    g = torch.load(wrong / "gpt_B_golden.pt", weights_only=True)
    g["greedy_cfg1.75_step0.18"]["cfg_per_token"][100] += 0.25  # one guidance value off
    torch.save(g, wrong / "gpt_B_golden.pt")
    keys = json.loads((wrong / "gpt_state_dict_keys.json").read_text())
    keys["GPT-B"]["state_dict"][3][1][-1] += 1  # one recorded shape off
    (wrong / "gpt_state_dict_keys.json").write_text(json.dumps(keys))

    nodes = (
        "tests/test_gpt_golden.py::test_cfg_per_token[greedy_cfg1.75_step0.18]",
        "tests/test_gpt_model.py::test_state_dict_matches_official_keys[gpt-b]",
    )
    ok = _pytest(exact, *nodes)
    assert ok.returncode == 0 and "2 passed" in ok.stdout, ok.stdout[-2000:]
    bad = _pytest(wrong, *nodes)
    assert bad.returncode == 1 and "2 failed" in bad.stdout, bad.stdout[-2000:]
