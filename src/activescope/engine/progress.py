"""The progress bar long engine work shows: a description, a bar, done/total and elapsed time."""

from __future__ import annotations

from typing import Any


def progress_bar(enabled: bool = True) -> Any:
    """A rich `Progress` with the engine's standard columns (hidden when not `enabled`); rich is
    imported only when a bar is made, so importing the engine stays light."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, disable=not enabled)
