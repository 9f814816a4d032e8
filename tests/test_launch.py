"""`--nproc-per-node`: the command runs itself on N processes (2 gloo workers on CPU here).

Multi-process tests start real workers through torchrun's launcher, so they are few: outputs equal
to one process's byte for byte, one download per file (none from the workers), one clear error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import FileServer, Route
from PIL import Image
from typer.testing import CliRunner

from gigatok_cli import launch, launch_worker
from gigatok_cli.main import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
SAMPLE = ["sample", "--gpt", "gpt-tiny", "--classes", "22", "-n", "2", "--device", "cpu"]


def gigatok(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``python -m gigatok_cli.main ARGS`` in a fresh process (one thread, like each worker)."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        full.pop(var, None)
    cmd = [sys.executable, "-m", "gigatok_cli.main", *args]
    return subprocess.run(cmd, env=full, cwd=cwd, capture_output=True, text=True, timeout=300)


def same_files(a: Path, b: Path, *, skip: tuple[str, ...]) -> list[str]:
    names = sorted(p.name for p in a.iterdir() if p.is_file())
    assert names == sorted(p.name for p in b.iterdir() if p.is_file())
    for name in names:
        if name not in skip:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names


# ---------------------------------------------------------------------------------------------
# Through real workers
# ---------------------------------------------------------------------------------------------
@pytest.mark.spawn
def test_reconstruct_on_two_workers_matches_one_process_byte_for_byte(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 256, (64 + 8 * k, 72, 3), dtype=np.uint8)).save(imgs / f"{k}.png")
    # batch size 1: a decoder batch of another shape moves some pixels by a level (the shards differ)
    common = ["-t", "tiny", "--device", "cpu", "--save-codes", "--grid", "--batch-size", "1"]
    proc = gigatok("reconstruct", str(imgs), *common, "-o", str(tmp_path / "multi"), "--nproc-per-node", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("wrote 3 reconstructions") == 1
    res = runner.invoke(app, ["reconstruct", str(imgs), *common, "-o", str(tmp_path / "single")])
    assert res.exit_code == 0, res.output
    names = same_files(tmp_path / "multi", tmp_path / "single", skip=("reconstruct.json",))
    assert "codes.npz" in names and "grid.png" in names


SITE = '''
"""Test only: give the tiny presets downloadable weights served by the test's HTTP server."""
import dataclasses, os
from gigatok_core import registry

url = os.environ["LAUNCH_TEST_URL"]
tok = registry._tokenizers()
tok["tiny"] = dataclasses.replace(tok["tiny"], weights="tiny.pt")
weights = registry._weights()
weights["tiny.pt"] = registry.WeightsRecord(file="tiny.pt", kind="tokenizer", sources=(url + "/tiny.pt",))
weights["gpt-tiny.pt"] = registry.WeightsRecord(file="gpt-tiny.pt", kind="gpt", sources=(url + "/gpt-tiny.pt",))
registry._gpt()[1]["gpt-tiny@tiny"] = registry.GPTRelease(
    name="gpt-tiny@tiny", gpt="gpt-tiny", tokenizer="tiny", weights="gpt-tiny.pt"
)
'''


def _checkpoint_bytes(state: dict[str, torch.Tensor], path: Path) -> bytes:
    torch.save({"model": state}, path)
    return path.read_bytes()


@pytest.mark.spawn
def test_sample_on_two_workers_fetches_once_and_matches_one_process_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gigatok_core.ar.load import load_gpt
    from gigatok_core.tokenizer import load_tokenizer

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(SITE))
    # the seeded random weights of the tiny presets, served as their released files
    # (a released tokenizer file also holds the training-only distill head, which loading drops)
    tok_state = load_tokenizer("tiny", with_distill=True).state_dict() | load_tokenizer("tiny").state_dict()
    tok_bytes = _checkpoint_bytes(tok_state, tmp_path / "tiny.pt")
    gpt_bytes = _checkpoint_bytes(load_gpt("gpt-tiny")[0].state_dict(), tmp_path / "gpt-tiny.pt")
    with FileServer() as srv:
        srv.routes["/w/tiny.pt"] = Route(body=tok_bytes)
        srv.routes["/w/gpt-tiny.pt"] = Route(body=gpt_bytes)
        env = {
            "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "LAUNCH_TEST_URL": f"{srv.url}/w",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        monkeypatch.delenv("GIGATOK_OFFLINE")
        extra = ["--grid", "--save-codes", "--batch-size", "3"]
        proc = gigatok(*SAMPLE, *extra, "-o", str(tmp_path / "multi"), "--nproc-per-node", "2", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert srv.transfers("/w/tiny.pt") == [None] and srv.transfers("/w/gpt-tiny.pt") == [None]
        assert len(srv.log) == 2  # one request per file, all from the parent
    assert proc.stdout.count("wrote 2 images") == 1  # rank 0 reports the total, once
    assert "Traceback" not in proc.stderr and "OMP_NUM_THREADS" not in proc.stderr  # no launcher banner
    # the downloaded weights are the seeded random tiny ones: one process without them writes the same
    res = runner.invoke(app, [*SAMPLE, *extra, "-o", str(tmp_path / "single")])
    assert res.exit_code == 0, res.output
    names = same_files(tmp_path / "multi", tmp_path / "single", skip=("sample.json",))
    assert len([n for n in names if n.endswith(".png")]) == 3 and "codes.npz" in names  # 2 samples + grid


@pytest.mark.spawn
def test_a_failing_worker_ends_the_run_with_one_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")  # exists (the parent's check passes), unreadable
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (32, 32)).save(imgs / "a.png")
    Image.new("RGB", (32, 32)).save(imgs / "b.png")
    proc = gigatok(
        "reconstruct", str(imgs), "-t", "tiny", "--checkpoint", str(bad), "--device", "cpu",
        "-o", str(tmp_path / "out"), "--nproc-per-node", "2",
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert text.count("error:") == 1 and "error: worker " in text and str(bad.name) in text, text
    assert "Traceback" not in text and "ChildFailedError" not in text and "Root Cause" not in text


# ---------------------------------------------------------------------------------------------
# In one process (no workers started)
# ---------------------------------------------------------------------------------------------
def test_under_an_existing_torchrun_the_flag_is_ignored_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = []
    monkeypatch.setattr(launch, "_run_workers", lambda *a: started.append(a))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    res = runner.invoke(app, [*SAMPLE, "-n", "1", "-o", str(tmp_path / "o"), "--nproc-per-node", "4"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "note: already running under torchrun" in text and "ignored" in text
    assert "wrote 1 image" in text and not started


def test_parent_validates_fetches_then_hands_the_same_command_to_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(launch, "_run_workers", lambda opts, n, argv: calls.append((opts, n, argv)))
    args = [*SAMPLE, "-o", str(tmp_path / "o"), "--cfg-interval", "-1", "--top-k", "5", "--grid"]
    res = runner.invoke(app, [*args, "--nproc-per-node", "3", "--nnodes", "2", "--node-rank", "1"])
    assert res.exit_code == 0, res.output
    [(opts, nproc, argv)] = calls
    assert nproc == 3 and (opts.nnodes, opts.node_rank) == (2, 1)
    assert argv[0] == "sample" and not any(a.startswith(("--nproc", "--nnodes", "--node-rank")) for a in argv)
    assert "--cfg-interval=-1" in argv and "--grid" in argv and "--gpt=gpt-tiny" in argv
    assert not (tmp_path / "o").exists()  # the parent only validated and fetched
    # the workers' command line means what the user typed
    res = runner.invoke(app, argv)
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "o").glob("022_*.png"))) == 2 and (tmp_path / "o" / "grid.png").exists()


def test_positional_arguments_follow_a_double_dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(launch, "_run_workers", lambda opts, n, argv: calls.append(argv))
    res = runner.invoke(app, ["reconstruct", "-t", "tiny", "--nproc-per-node", "2", "--", "a.png", "-x.png"])
    assert res.exit_code == 0, res.output
    assert calls == [["reconstruct", "--tokenizer=tiny", "--", "a.png", "-x.png"]]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nproc-per-node", "two"], "--nproc-per-node must be a positive number or 'auto'"),
        (["--nproc-per-node", "0"], "--nproc-per-node must be a positive number or 'auto'"),
        (["--nproc-per-node", "2", "--nnodes", "2", "--node-rank", "2"], "--node-rank 2 is outside 0..1"),
        (["--nproc-per-node", "2", "--classes", "no such class"], "no such class"),
        (["--nproc-per-node", "2", "--gpt-checkpoint", "missing.pt"], "missing.pt does not exist"),
    ],
)
def test_bad_requests_fail_in_the_parent_before_any_worker(
    flags: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(launch, "_run_workers", lambda *a: calls.append(a))
    res = runner.invoke(app, [*SAMPLE, "-o", str(tmp_path / "o"), *flags])
    assert res.exit_code == 1 and not calls
    assert message in " ".join(res.output.split())


def test_auto_without_gpus_runs_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(launch, "_run_workers", lambda *a: pytest.fail("no workers without GPUs"))
    res = runner.invoke(app, [*SAMPLE, "-n", "1", "-o", str(tmp_path / "o"), "--nproc-per-node", "auto"])
    assert res.exit_code == 0, res.output
    assert "running in one process" in " ".join(res.output.split())


def test_torchrun_arguments() -> None:
    single = launch.LaunchOptions(nproc_per_node="8")
    assert "--standalone" in launch._torchrun_args(single, 8)
    multi = launch.LaunchOptions(nproc_per_node="8", nnodes=2, node_rank=1, master_addr="10.0.0.1")
    args = launch._torchrun_args(multi, 8)
    assert args[args.index("--node-rank") + 1] == "1" and args[args.index("--master-addr") + 1] == "10.0.0.1"
    assert args[args.index("--master-port") + 1] == "29500" and "--standalone" not in args
    rdzv = launch._torchrun_args(launch.LaunchOptions(nnodes=4, rdzv_endpoint="head:29400"), 8)
    assert rdzv[rdzv.index("--rdzv-endpoint") + 1] == "head:29400" and "--node-rank" not in rdzv


def test_global_progress_sums_the_local_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int | None, str]] = []
    monkeypatch.setenv(launch_worker.LAUNCH_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    launch_worker.global_progress(lambda d, t, *, stage="": pytest.fail("only rank 0 shows a bar"))(
        3, 5, stage="sample"
    )
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    bar = launch_worker.global_progress(lambda d, t, *, stage="": seen.append((d, t, stage)))
    bar(2, 5, stage="sample")
    bar(4, None, stage="inception: samples")  # a stage only rank 0 runs, of unknown length
    assert seen == [(5, 10, "sample"), (4, None, "inception: samples")]


def test_a_worker_error_is_written_for_the_parent_not_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    from gigatok_core.errors import GigatokError

    monkeypatch.setenv(launch_worker.LAUNCH_DIR_ENV, str(tmp_path))
    for rank, err in ((1, RuntimeError("CUDA out of memory. Tried to allocate 2 GiB\nmore")), (0, None)):
        monkeypatch.setenv("RANK", str(rank))
        with pytest.raises(typer.Exit), launch_worker.worker_errors_reported():
            raise err or GigatokError("peer went away", hint="later")
        time.sleep(0.01)  # distinct report times
    first = launch_worker.first_worker_error(tmp_path)  # the earlier report is the cause
    assert (
        first["rank"] == 1 and first["message"] == "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"
    )
    assert "CUDA out of memory" in Path(first["traceback_file"]).read_text()
    assert "traceback" in first["hint"]


def test_a_worker_killed_without_a_python_error_is_named_by_its_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def killed(args: object) -> None:
        aborted = ProcessFailure(local_rank=1, pid=1234, exitcode=-6, error_file="<N/A>")
        raise ChildFailedError("gigatok_cli.main", {1: aborted})

    monkeypatch.setattr(torchrun, "run", killed)
    with pytest.raises(launch.GigatokError, match="worker 1 of the 2 stopped with signal SIGABRT"):
        launch._run_workers(launch.LaunchOptions(nproc_per_node="2"), 2, ["sample"])

    def exited(args: object) -> None:
        raise ChildFailedError("gigatok_cli.main", {0: ProcessFailure(0, 1234, 3, "<N/A>")})

    monkeypatch.setattr(torchrun, "run", exited)
    with pytest.raises(launch.GigatokError, match="worker 0 of the 2 stopped with exit code 3"):
        launch._run_workers(launch.LaunchOptions(nproc_per_node="2"), 2, ["sample"])


LEAVE = """
import atexit, sys
import torch.distributed as dist
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
flag = sys.argv[2]
atexit.register(lambda: open(flag, "w").write(str(dist.is_initialized())))
sys.argv = ["gigatok", *sys.argv[3:]]
from gigatok_cli.main import main
main()
print("not reached")
"""


@pytest.mark.spawn
@pytest.mark.parametrize(("argv", "code", "destroyed"), [(["--version"], 0, True), (["--bogus"], 2, False)])
def test_a_worker_leaves_its_process_group_with_the_commands_exit_code(
    tmp_path: Path, argv: list[str], code: int, destroyed: bool
) -> None:
    """In a process group, ``main`` destroys it after a success (not after a failure, when peers may be
    stuck), runs the exit handlers and leaves with the command's code, skipping finalization."""
    flag = tmp_path / "flag"
    cmd = [sys.executable, "-c", LEAVE, str(tmp_path / "store"), str(flag), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert "not reached" not in proc.stdout and ("gigatok" in proc.stdout) == (code == 0)
    assert flag.read_text() == str(not destroyed)
