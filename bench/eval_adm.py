"""Reproduce ADM's published evaluation of its guided 256 samples with our in-process evaluator.

Needs a GPU and two files that tests never download:

- ``VIRTUAL_imagenet256_labeled.npz`` (reference batch) and
- ``admnet_guided_upsampled_imagenet256.npz`` (ADM-G + upsampler samples, 50k images),

both from https://github.com/openai/guided-diffusion/tree/main/evaluations, plus the FID
Inception weights ``pt_inception-2015-12-05-6726825d.pth`` (gigatok cache or ``--inception-weights``).

Published numbers (ADM README, TensorFlow evaluator): IS 215.84, FID 3.9426, sFID 6.1404,
precision 0.8265, recall 0.5309. This script prints ours, the differences and Inception images/s
(the reference's images/s only on the first run: its features are cached afterwards).
Not yet run on the real files (none can be downloaded where it was written); a test runs it end to
end on a few synthetic images with random Inception weights.

    python bench/eval_adm.py --samples admnet_guided_upsampled_imagenet256.npz \\
        --reference VIRTUAL_imagenet256_labeled.npz [--inception-weights FILE] [--batch-size 250]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gigatok_core.evaluation import Evaluator, compute_metrics

PUBLISHED = {"is": 215.84, "fid": 3.9426, "sfid": 6.1404, "precision": 0.8265, "recall": 0.5309}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=Path, required=True)
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--inception-weights", type=Path, default=None)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", type=Path, default=None, help="write ours, published and differences here")
    args = ap.parse_args(argv)

    timings: dict[str, float] = {}
    counts: dict[str, int] = {}

    def progress(done: int, total: int | None, *, stage: str = "") -> None:  # gigatok_core.utils.progress
        counts[stage.removeprefix("inception: ")] = done

    ev = Evaluator(
        inception_weights=args.inception_weights,
        device=torch.device(args.device),
        batch_size=args.batch_size,
        progress=progress,
    )
    _ = ev.model  # load outside the timed region
    for label, path in (("reference", args.reference), ("samples", args.samples)):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        stats = ev.load(path, need_features=True, label=label)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        timings[label] = time.perf_counter() - t0
        if label == "reference":
            ref = stats
        else:
            samples = stats
    t0 = time.perf_counter()
    metrics = compute_metrics(samples, ref, device=args.device)
    timings["metrics"] = time.perf_counter() - t0

    print(f"{'metric':<10} {'ours':>12} {'published':>12} {'diff':>12}")
    rows = {}
    for key, pub in PUBLISHED.items():
        ours = metrics[key]
        rows[key] = {"ours": ours, "published": pub, "diff": None if ours is None else ours - pub}
        shown = ("n/a", "n/a") if ours is None else (f"{ours:.4f}", f"{ours - pub:+.4f}")
        print(f"{key:<10} {shown[0]:>12} {pub:>12.4f} {shown[1]:>12}")
    for note in metrics.get("notes", []):
        print(f"note: {note}")
    speed = {
        label: counts.get(label, 0) / timings[label]
        for label in ("reference", "samples")
        if counts.get(label)
    }
    for label, ips in speed.items():
        print(f"inception images/s ({label}, batch {args.batch_size}, {ev.device}): {ips:.1f}")
    print(f"metric computation (sqrtm, IS, precision/recall): {timings['metrics']:.1f} s")
    report = {
        "metrics": rows,
        "images_per_s": speed,
        "timings_s": timings,
        "device": torch.cuda.get_device_name() if ev.device.type == "cuda" else "cpu",
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
