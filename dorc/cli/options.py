"""Options shared by commands in several CLI modules (one declaration, one help text)."""

from __future__ import annotations

import typer

ConfigRepo = typer.Option(
    None, "--config-repo", envvar="CONFIG_REPO_PATH", show_envvar=True,
    help="The pipeline-config folder (default: ./pipeline-config, else the nearest folder above holding a dorc.toml).",
)
