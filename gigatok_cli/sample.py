"""`gigatok sample`: class-conditional generation with a GPT and its tokenizer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gigatok_cli._common import handle_errors, out, plural
from gigatok_cli.run import request_command

if TYPE_CHECKING:
    from gigatok_core.tasks.sample import SampleResult


def _render(result: SampleResult) -> None:
    from gigatok_core.dist import dist_info

    skipped = f" ({result.skipped_total} already there, skipped)" if result.skipped_total else ""
    out.print(
        f"wrote {plural(result.generated_total, 'image')} to {result.output_dir}{skipped}",
        highlight=False,
        soft_wrap=True,
    )
    for f in result.files:
        out.print(f"wrote {f}", highlight=False, soft_wrap=True)
    if "sampler" in result.settings and result.forward_passes:  # sample.json names only sjd
        out.print(
            f"sjd: {result.forward_passes} GPT forward passes where the standard sampler runs "
            f"{result.standard_passes} ({result.standard_passes / result.forward_passes:.2f}x fewer"
            f"{', this process' if dist_info().world_size > 1 else ''})",
            highlight=False,
            soft_wrap=True,
        )


@handle_errors
@request_command(
    "SampleRequest", "gigatok_core.tasks.sample:sample_images", _render, label="sample", no_env=("tokenizer",)
)
def sample(**settings: Any) -> None:
    """Generate ImageNet-class images with a GigaTok GPT (runs under torchrun too).

    Example: gigatok sample --gpt gpt-xxl --tokenizer xl-xxl --classes 22,388 --output samples --grid
    """
