"""One distributed context for every entry point: no rank/world/gather arguments, and HandSplit."""

from __future__ import annotations

import inspect

import pytest
import torch

from gigatok_core.dist import DistContext, HandSplit, get_context


def _entry_points() -> dict[str, object]:
    from gigatok_core.data.extract import extract_codes
    from gigatok_core.evaluation.generation import evaluate_generation
    from gigatok_core.evaluation.reconstruction import evaluate_reconstruction
    from gigatok_core.evaluation.val_loss import validation_loss
    from gigatok_core.tasks.reconstruct import reconstruct
    from gigatok_core.tasks.sample import sample_images

    return {
        "reconstruct": reconstruct,
        "sample_images": sample_images,
        "evaluate_reconstruction": evaluate_reconstruction,
        "evaluate_generation": evaluate_generation,
        "validation_loss": validation_loss,
        "extract_codes": extract_codes,
    }


@pytest.mark.parametrize("name", list(_entry_points()))
def test_entry_points_take_one_context(name: str) -> None:
    params = inspect.signature(_entry_points()[name]).parameters
    assert "ctx" in params and params["ctx"].default is None
    assert not {"rank_info", "gather", "rank", "world_size"} & set(params)


def test_context_shards_by_striding() -> None:
    items = list(range(7))
    parts = [DistContext(rank=r, world_size=3).shard(items) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert get_context(init=False).shard(items) == items  # a world of one takes everything
    assert get_context(init=False).concurrent


def test_hand_split_reaches_no_other_rank() -> None:
    handed: list[object] = []
    ctx = HandSplit(1, 2, gather=lambda obj: handed.append(obj) or ["r0", obj])
    assert not ctx.concurrent and ctx.distributed and not ctx.is_main
    assert ctx.gather_objects("r1") == ["r0", "r1"] and handed == ["r1"]
    assert ctx.broadcast_object({"mine": 1}) == {"mine": 1}  # no rank 0 to hear from
    t = torch.tensor([2.0])
    assert ctx.all_reduce(t, "mean").item() == 2.0
    ctx.barrier()  # returns at once
    assert HandSplit(0, 2).gather_objects("x") == ["x"]  # without a gather: its own object only
    assert HandSplit(0, 2, gather=len) == HandSplit(0, 2)  # the gather is no part of the identity
