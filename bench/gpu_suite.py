"""Every check only a GPU can make, in one command that fits a short GPU rental (random weights).

    bash bench/device_run.sh                     # on the GPU machine (installs the carried wheels)
    python bench/gpu_suite.py --json out.json    # the suite alone, on a CUDA machine
    python bench/gpu_suite.py --smoke            # the same code paths on CPU, tiny presets, seconds

The cases run in order of value, each under its own deadline and all within ``--budget-s``; after
every row the JSON file is rewritten (atomically) and the row is printed, so a kill at any moment
leaves every finished figure on disk. Each measurement inside a case is guarded: a failure (out of
memory, a refused combination) becomes a row and the case goes on. Models are built once, on the
device, and reused; between cases the suite frees static KV caches, compiled graphs and the
allocator's cache, and records each case's peak memory above its own starting point.

1. GPT-XXL decode step at batch 8 with CFG (16 rows), eager and compiled (CUDA graphs), against
   the physical floor (weight bytes / the card's published HBM bandwidth; target <= 2x) and the
   measured floor ((weights + mean KV cache) / measured read bandwidth); checks that no CUDA graph
   was skipped and nothing recompiled in the timed steps; step time early vs late in the sequence.
2. Peak memory of xl-xxl + gpt-xxl sampling at batch 8 (target <= 12 GB).
3. GPT training tokens/s and MFU for gpt-b and gpt-xxl at 32 per GPU, eager and compiled: MFU =
   (6 N + 12 L d T) tokens/s / the card's dense bf16 peak (N: parameters without the embedding
   tables; 12 L d T: the attention products, PaLM's appendix B); target >= 40% for gpt-xxl.
4. Tokenizer training images/s and peak memory (s-s, b-l at their official per-GPU batch; xl-xxl
   at 8: the one-GPU peak, and the per-GPU estimate under 8-way FSDP).
5. gFID timing: compiled sampling, tokenizer decode, PNG writing and reading back (the path of
   ``gigatok eval gfid``), Inception in fp32 without TF32 (the evaluation's precision), extrapolated
   to 50k samples beside the 50k floor on this card (target <= 5 min).
6. Tokenizer encode+decode images/s (s-s, b-l, xl-xxl; eager and compiled) beside the compute floor.
7. Probe epoch over cached features (target: 1.28M features <= 1 min) and 8. the tokenizer data
   loader's images/s. 9. ``pytest -m gpu`` on the GPU test files, last, with a timeout.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_kit import Suite, run_cases
from gpu_sampling import case_decode, case_gfid, case_peak_memory, case_tokenizer_codec
from gpu_training import case_loader, case_probe, case_pytest, case_train_gpt, case_train_tokenizer

CASES = [  # (name, deadline in seconds, function), in order of value
    ("GPT decode step", 150, case_decode),
    ("peak memory, sampling", 40, case_peak_memory),
    ("GPT training", 120, case_train_gpt),
    ("tokenizer training", 80, case_train_tokenizer),
    ("gFID timing", 90, case_gfid),
    ("tokenizer encode/decode", 70, case_tokenizer_codec),
    ("probe epoch", 30, case_probe),
    ("data loader", 30, case_loader),
    ("pytest -m gpu", 120, case_pytest),
]


# ---------------------------------------------------------------------------------------------
# Sizes and the command line
# ---------------------------------------------------------------------------------------------
REAL = {
    "gpt": "gpt-xxl",
    "gpt_tokenizer": "xl-xxl",
    "batch": 8,
    "gfid_batch": 128,
    "gfid_samples": 256,
    "inception_batch": 64,  # eval gfid's --batch-size
    "tokenizers": ("s-s", "b-l", "xl-xxl"),
    "tok_batch": 16,
    "iters": 3,
    # The official per-GPU batches: the preset's global batch over the 8 GPUs of the official scripts.
    "train_gpt": (("gpt-xxl", 32), ("gpt-b", 32)),  # the target (gpt-xxl) first
    "train_tokenizer": (("s-s", 16), ("b-l", 32), ("xl-xxl", 8)),
    "train_steps": 5,
    "train_warmup": 2,
    "probe": (262_144, 1536, 128),  # features, width (gpt-xxl), batch
    "loader": (224, 32, 8, 6),  # images, batch, workers, timed batches
    "pytest_timeout": 110,
}
SMOKE = {
    **REAL,
    "gpt": "gpt-tiny",
    "gpt_tokenizer": "tiny",
    "tokens": 16,
    "batch": 2,
    "gfid_batch": 2,
    "gfid_samples": 2,
    "inception_batch": 2,
    "tokenizers": ("tiny",),
    "tok_batch": 1,
    "iters": 1,
    "train_gpt": (("gpt-tiny", 2),),
    "train_tokenizer": (("tiny", 1),),
    "train_steps": 1,
    "train_warmup": 1,
    "probe": (512, 32, 64),
    "loader": (6, 2, 0, 2),
    "pytest_timeout": 60,
}


SMOKE_DEADLINE_FACTOR = 4


def make_suite(smoke: bool, device: str | None, json_path: Path | None) -> Suite:
    if not smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --smoke on CPU")
    dev = torch.device(device or ("cpu" if smoke else "cuda"))
    s = Suite(
        smoke=smoke,
        device=dev,
        dtype=torch.float32 if smoke else torch.bfloat16,
        json_path=json_path,
        sizes=dict(SMOKE if smoke else REAL),
    )
    if smoke:  # dynamo traces as on the GPU, without an inductor (C++) build: seconds, not minutes
        from gigatok_core.ar import decode
        from gigatok_core.ar.gpt import GPT

        decode._COMPILED["default"] = torch.compile(
            GPT.decode_step, backend="eager", fullgraph=True, dynamic=False
        )
    card = s.card
    s.meta = {
        "device": torch.cuda.get_device_name(dev) if s.cuda else "CPU",
        "card": card.name,
        "published_hbm_tb_s": None if card.hbm_bytes_per_s is None else card.hbm_bytes_per_s / 1e12,
        "published_bf16_tflops": None if card.bf16_flops is None else card.bf16_flops / 1e12,
        "smoke": smoke,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return s


def render(s: Suite) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gigatok GPU suite on {s.meta['device']}{' (--smoke)' if s.smoke else ''}")
    for col in ("case", "value", "floor", "target", "ok", "note"):
        table.add_column(col, justify="right" if col in ("value", "floor") else "left")

    def num(v: float | None, unit: str) -> str:
        return "" if v is None else f"{v:,.3g} {unit}"

    for r in s.rows:
        ok = "" if r.ok is None else "[green]yes[/]" if r.ok else "[red]NO[/]"
        table.add_row(r.case, num(r.value, r.unit), num(r.floor, r.unit), r.target, ok, r.note)
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> Suite:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny presets, fp32: the code paths in seconds")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here after every row")
    ap.add_argument("--budget-s", type=float, default=360.0, help="all cases end within this (seconds)")
    ap.add_argument("--only", action="append", help="run only cases whose name contains this (repeatable)")
    ap.add_argument("--skip", action="append", default=[], help="skip cases whose name contains this")
    ap.add_argument("--list", action="store_true", help="print the cases and their deadlines, then exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, limit, _ in CASES:
            print(f"{limit:.0f} s\t{name}")
        sys.exit(0)

    torch.backends.cuda.matmul.allow_tf32 = True  # bf16 cases; fp32 matmuls as a GPU user runs them
    s = make_suite(args.smoke, args.device, args.json)
    s.meta["budget_s"] = args.budget_s
    print(
        f"gigatok GPU suite on {s.meta['device']} ({s.card.name}), budget {args.budget_s:.0f} s", flush=True
    )
    # --smoke runs on a CPU that may be small and shared: the deadlines are those of the GPU x4
    cases = [(name, limit * (SMOKE_DEADLINE_FACTOR if s.smoke else 1), fn) for name, limit, fn in CASES]
    run_cases(s, cases, budget_s=args.budget_s, only=args.only, skip=args.skip)
    s.write(finished=True)
    render(s)
    return s


if __name__ == "__main__":
    main()
