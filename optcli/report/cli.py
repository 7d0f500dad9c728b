"""`optcli report ...`: what CI tooling needs to read report.json."""

from __future__ import annotations

import typer

report_app = typer.Typer(help="The report.json format.", no_args_is_help=True)


@report_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of report.json (versioned by its `schema_version`).

    Example: optcli report schema > report.schema.json
    """
    from optcli.report.schema import schema_text

    typer.echo(schema_text(), nl=False)
