"""``--progress bar`` of the single-run commands draws the same bar as ``deepseg batch`` (one helper)."""
from __future__ import annotations

from deepseg.cli.common import bar_text, progress_callback


def test_bar_fills_in_proportion_and_ends_the_line(capsys):
    show = progress_callback("bar")
    show("infer", 1, 3)
    show("infer", 3, 3)
    show("write", 0, 0)
    err = capsys.readouterr().err
    assert err == (f"\rinfer       [{'#' * 10}{'.' * 20}] 1/3" f"\rinfer       [{'#' * 30}] 3/3\n" "write...\n")
    assert bar_text(0, 0) == "[" + "." * 30 + "]"  # nothing to do yet: an empty bar, no division by zero


def test_none_gives_no_callback():
    assert progress_callback("none") is None
