"""Entry point: `attn-dse`. Every command is a thin layer over one library function."""
from __future__ import annotations

import os
import sys

import click

from attn_dse import __version__
from attn_dse.cli import commands
from attn_dse.cli.hw import hw_group
from attn_dse.cli.papers import papers


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class _Group(click.Group):
    """The one error boundary: every failure is one line on stderr, never a traceback.

    AttnDseError (bad input) -> `error: ...`, exit 2; click's usage errors -> one line, exit 2;
    Ctrl-C outside a sweep -> `interrupted`, exit 130; a reader that closed the pipe (`| head`)
    -> silence, exit 141; anything else -> one line naming the
    exception and how to see its traceback (ATTN_DSE_DEBUG=1 re-raises), exit 1."""

    def invoke(self, ctx: click.Context):
        from attn_dse.errors import AttnDseError
        try:
            return super().invoke(ctx)
        except AttnDseError as exc:
            _fail(f"error: {exc}", 2)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:  # `attn-dse ... | head`: the reader has what it wanted
            _closed_pipe()
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if os.environ.get("ATTN_DSE_DEBUG", "") not in ("", "0"):
                raise
            _fail(f"error: unexpected {type(exc).__name__}: {exc} (set ATTN_DSE_DEBUG=1 to see the traceback)", 1)

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except _NO_ARGS as exc:  # a group without its command: the help, as click prints it
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.UsageError as exc:  # click prints usage + hint + error: make it one line
            where = f"; see '{exc.ctx.command_path} --help'" if exc.ctx else ""
            _fail(f"error: {exc.format_message().rstrip('.')}{where}", exc.exit_code)
        except click.exceptions.ClickException as exc:
            _fail(f"error: {exc.format_message()}", exc.exit_code)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        sys.exit(rv if isinstance(rv, int) else 0)


def _closed_pipe() -> None:
    """Stop quietly, as Unix tools do when their reader closes the pipe (exit 141 = 128 + SIGPIPE);
    stdout goes to /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)


def _fail(line: str, code: int) -> None:
    """One line on stderr (newlines in a message folded), then exit."""
    click.secho(" ".join(line.split("\n")), fg="red" if code != 130 else None, err=True)
    sys.exit(code)


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
cli.add_command(papers)
for _command in (commands.predict, commands.list_variants, commands.list_models, commands.sweep, commands.roofline,
                 commands.validate):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="attn-dse")
