"""Progress bars for long commands: a `Progress` callback drawn by tqdm, one bar per stage."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from routing.importing import Progress


def progress_bars(stream: TextIO) -> Progress:
    """A bar on `stream` for each stage, ended when the stage is done or the next one starts.

    On a terminal the bar is redrawn in place. Anywhere else (a log, a pipe, captured
    output) nothing is redrawn: each stage writes one plain line, its final bar, when it ends.
    """
    live = stream.isatty()
    bar: tqdm | None = None

    def end() -> None:
        nonlocal bar
        if not live:
            stream.write(f"{bar}\n")
            stream.flush()
        bar.close()
        bar = None

    def show(stage: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is not None and bar.desc != stage:
            end()
        if bar is None:
            bar = tqdm(
                desc=stage,
                total=total or None,  # 0: unknown, the bar counts without a percentage
                file=stream,
                dynamic_ncols=True,
                ascii=None if live else True,
                # Off a terminal tqdm would redraw with carriage returns: never draw.
                delay=0 if live else math.inf,
            )
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        if total and done >= total:
            end()

    return show
