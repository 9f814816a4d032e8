"""gFID of a GPT: sample class-balanced images with the sampler, then score them against ADM's batch.

Protocol differences from the official ``sample_c2i_cfg_search.py`` (spec ar.md §5), stated so
numbers are read correctly: labels are class-balanced (``num_per_class`` per class, 50 -> 50k)
instead of uniform-random ``torch.randint`` labels, and each image is seeded from
(seed, class, index) by :func:`gigatok_core.sample.sample_images` (resumable, world-size
independent). The evaluator is ours (same Inception weights and metric definitions as ADM's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gigatok_core.evaluation.evaluate import Evaluator, compute_metrics
from gigatok_core.evaluation.reference import check_protocol

PROTOCOL = "gfid-adm"
NUM_CLASSES = 1000


def evaluate_generation(
    gpt: str,
    *,
    output: str | Path,
    evaluator: Evaluator,
    reference: str | Path | None = None,
    tokenizer: str | None = None,
    num_per_class: int = 50,
    force: bool = False,
    with_precision_recall: bool = True,
    **sample_kwargs: Any,
) -> dict[str, Any]:
    """Sample ``num_per_class`` x 1000 images into ``output`` (existing ones are kept), then score them.

    ``sample_kwargs`` go to :func:`gigatok_core.sample.sample_images` (cfg, sampling, seed,
    precision, batch_size, device, checkpoints, overwrite, on_progress).
    """
    if reference is None:
        from gigatok_core.hub import fetch_weights

        reference = fetch_weights("VIRTUAL_imagenet256_labeled.npz")
    check_protocol(reference, PROTOCOL, force=force)  # before hours of sampling
    from gigatok_core.sample import sample_images

    sample_images(list(range(NUM_CLASSES)), output=output, gpt=gpt, tokenizer=tokenizer,
                  num_per_class=num_per_class, **sample_kwargs)
    samples = evaluator.load(output, need_features=True, label="samples")
    ref = evaluator.load(reference, need_features=with_precision_recall, label="reference")
    metrics = compute_metrics(samples, ref, with_precision_recall=with_precision_recall, device=evaluator.device)
    metrics |= {"protocol": PROTOCOL, "reference": str(reference), "num_per_class": num_per_class}
    return metrics
