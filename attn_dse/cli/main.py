"""Entry point: `attn-dse`. Every command is a thin layer over one library function."""
from __future__ import annotations

import sys

import click

from attn_dse import __version__
from attn_dse.cli import commands
from attn_dse.cli.hw import hw_group


class _Group(click.Group):
    """Turns AttnDseError into one line on stderr and exit code 2: never a traceback."""

    def invoke(self, ctx: click.Context):
        from attn_dse.errors import AttnDseError
        try:
            return super().invoke(ctx)
        except AttnDseError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="attn-dse")
def cli() -> None:
    """Performance models and design-space exploration for attention on accelerators.

    \b
    Start here:
      attn-dse hw list                       the hardware presets
      attn-dse sweep hw/h20.yaml             the built-in study: which variant wins where
      attn-dse predict h100 --model llama-3-70b --phase decode --batch 16 --context 8192
      attn-dse roofline h100 h20 --variants gqa,mla -o roofline.png
    HW is a preset name (h20) or a YAML path (hw/h20.yaml).
    """


cli.add_command(hw_group)
for _command in (commands.predict, commands.list_variants, commands.list_models, commands.sweep, commands.roofline,
                 commands.validate):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="attn-dse")
