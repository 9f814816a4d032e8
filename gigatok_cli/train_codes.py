"""`gigatok train extract-codes`: encode an ImageFolder into a codes folder for GPT training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gigatok_cli._common import console, handle_errors, out, plural
from gigatok_cli.run import request_command

if TYPE_CHECKING:
    from gigatok_core.data.extract import ExtractReport


def _render(report: ExtractReport) -> None:
    m = report.manifest
    if report.already_complete:
        out.print(
            f"{m.root} already holds these codes ({plural(m.num_images, 'image')}); nothing to do",
            highlight=False,
        )
        return
    if report.skipped:
        console.print(
            f"[yellow]{plural(len(report.skipped), 'image')} skipped[/] (unreadable or too elongated; listed in manifest.json)"
        )
    resumed = f", {report.reused_shards} kept from an earlier run" if report.reused_shards else ""
    out.print(
        f"wrote {plural(m.num_images, 'image')} x {m.crops} crops in {plural(len(m.shards), 'shard')} to {m.root}"
        f" ({report.encoded_shards} written{resumed}; {report.images_per_second:,.1f} images/s)",
        highlight=False,
    )
    if report.check_grid is not None:
        out.print(f"wrote {report.check_grid}", highlight=False)


@handle_errors
@request_command("ExtractCodesRequest", "gigatok_core.data.extract:extract_codes", _render, rate="img/s")
def extract_codes(**settings: Any) -> None:
    """Encode images into tokenizer codes once, for `gigatok train gpt --codes CODES_DIR`.

    A killed run resumes when started again with the same options.
    Example: gigatok train extract-codes --tokenizer xl-xxl --data imagenet/train --output codes --ten-crop
    """
