"""The import's progress bars: redrawn on a terminal, one plain line per stage elsewhere."""

from __future__ import annotations

import io

from routing.progress import progress_bars


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def an_import(progress) -> None:
    """The calls import_prefixes makes: checking with an unknown total, then writing."""
    for line in (0, 50_000, 100_000):
        progress("checking", line, 0)
    progress("checking", 120_000, 120_000)
    for step in range(4):
        progress("writing", step, 3)


def test_off_a_terminal_each_stage_writes_one_line_when_it_ends():
    stream = io.StringIO()
    an_import(progress_bars(stream))
    lines = stream.getvalue().splitlines()
    assert [line.partition(" [")[0] for line in lines] == [
        "checking: 100%|##########| 120000/120000",
        "writing: 100%|##########| 3/3",
    ]
    assert "\r" not in stream.getvalue()


def test_a_stage_that_never_ends_writes_nothing_off_a_terminal():
    stream = io.StringIO()
    progress = progress_bars(stream)
    progress("checking", 50_000, 100_000)
    assert stream.getvalue() == ""
    progress("writing", 3, 3)  # the next stage ends the unfinished one
    assert [line.partition(":")[0] for line in stream.getvalue().splitlines()] == [
        "checking",
        "writing",
    ]


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_left_when_done():
    stream = Terminal()
    an_import(progress_bars(stream))
    text = stream.getvalue()
    assert text.count("\n") == 2  # one finished bar per stage
    assert text.startswith("\rchecking: 0it")  # unknown total: a count, no percentage
    assert "\rchecking: 100%" in text
    assert text.endswith("\n")
