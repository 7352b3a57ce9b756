"""`attn-dse papers`: every published claim against the model's prediction."""
from __future__ import annotations

import click

from attn_dse.cli.output import echo_json


@click.command("papers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every claim with its setup and sources).")
def papers(as_json: bool) -> None:
    """Published results (validation/papers.yaml) against predictions: source, setup, published,
    predicted, predicted/published, and the named reason where the model misses the tolerance."""
    from attn_dse.validation.papers import describe_setup, evaluate_all

    results = evaluate_all()
    if as_json:
        echo_json([r.to_dict() for r in results])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Published results vs the model", header_style="bold", show_lines=True)
    for col, just in (("claim", "left"), ("source", "left"), ("setup", "left"), ("quantity", "left"),
                      ("published", "right"), ("predicted", "right"), ("ratio", "right"), ("", "left")):
        table.add_column(col, justify=just)
    for r in results:
        status = "ok" if r.within else ("miss (reason)" if r.reason else "MISS")
        table.add_row(r.id, f"{r.source.get('url', '')} ({r.source.get('where', '')})"[:90], describe_setup(r),
                      r.quantity, f"{r.published:.4g}", f"{r.predicted:.4g}", f"{r.ratio:.3f}", status)
    Console(width=200).print(table)
    for r in results:
        if r.reason and not r.within:
            click.echo(f"{r.id}: {r.reason}")
