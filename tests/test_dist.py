"""DistContext and EpochSampler: a world of one, and two gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from gigatok_core.dist import DistContext, DistInfo, EpochSampler, get_context


def test_context_in_a_world_of_one():
    ctx = get_context()
    assert isinstance(ctx, DistContext) and isinstance(ctx, DistInfo)
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    t = torch.tensor([2.0, 4.0])
    assert ctx.all_reduce(t, "mean") is t and t.tolist() == [2.0, 4.0]
    assert ctx.gather_objects({"a": 1}) == [{"a": 1}]
    assert ctx.broadcast_object("x") == "x"
    ctx.barrier()


def _ranks(n, world, seed=3, epoch=0, start=0, shuffle=True):
    out = []
    for r in range(world):
        s = EpochSampler(n, seed=seed, rank=r, world_size=world, shuffle=shuffle)
        s.set_epoch(epoch, start=start)
        out.append(list(s))
    return out


def test_sampler_is_a_seeded_epoch_permutation():
    (one,) = _ranks(10, 1)
    assert sorted(one) == list(range(10)) and one != list(range(10))
    assert _ranks(10, 1) == [one]  # same seed + epoch: same order
    assert _ranks(10, 1, epoch=1) != [one]  # another epoch: another order
    assert _ranks(10, 1, seed=4) != [one]
    assert _ranks(5, 1, shuffle=False) == [[0, 1, 2, 3, 4]]


def test_sampler_strides_over_ranks_with_equal_counts():
    (order,) = _ranks(11, 1)
    parts = _ranks(11, 3)
    assert [len(p) for p in parts] == [3, 3, 3]  # 11 // 3; the tail of 2 is left out
    assert parts == [order[0:9:3], order[1:9:3], order[2:9:3]]
    s = EpochSampler(11, seed=3, rank=1, world_size=3)
    assert len(s) == 3


def test_global_batches_do_not_depend_on_world_size_and_resume_mid_epoch():
    n, batch = 24, 4  # global batch 4: one step = global positions [4k, 4k+4)

    def steps(world, start=0):
        parts = _ranks(n, world, start=start)
        per = batch // world
        count = len(parts[0]) // per
        return [sorted(i for p in parts for i in p[k * per : (k + 1) * per]) for k in range(count)]

    full = steps(1)
    assert steps(2) == full and steps(4) == full
    assert steps(2, start=8) == full[2:]  # resumed after two steps, on another world size
    assert steps(4, start=8) == full[2:]


@pytest.mark.spawn
def test_2_process_gloo_context_and_sampler(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys, torch
            from gigatok_core.dist import EpochSampler, exit_process, get_context
            ctx = get_context()
            t = torch.tensor([float(ctx.rank + 1)])
            total = ctx.all_reduce(t.clone(), "sum").item()
            mean = ctx.all_reduce(t.clone(), "mean").item()
            biggest = ctx.all_reduce(t.clone(), "max").item()
            got = ctx.broadcast_object({"from": ctx.rank})
            s = EpochSampler(10, seed=1, rank=ctx.rank, world_size=ctx.world_size)
            s.set_epoch(2, start=2)
            gathered = ctx.gather_objects(list(s))
            ctx.barrier()
            if ctx.is_main:
                out = {"world": ctx.world_size, "sum": total, "mean": mean, "max": biggest,
                       "bcast": got, "parts": gathered}
                open(sys.argv[1], "w").write(json.dumps(out))
            exit_process(0)
            """
        )
    )
    out = tmp_path / "out.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run([*cmd, str(script), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert (got["world"], got["sum"], got["mean"], got["max"]) == (2, 3.0, 1.5, 2.0)
    assert got["bcast"] == {"from": 0}
    order = EpochSampler(10, seed=1).global_order(2).tolist()[2:]
    assert got["parts"] == [order[0::2], order[1::2]]
