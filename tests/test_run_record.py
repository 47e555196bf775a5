"""The terminal summary (run_record.py): ids and previews are shown escaped and short, so a record cannot
retitle or recolour the terminal, nor flood it."""
from __future__ import annotations

import numpy as np

from dataselect.run_record import print_summary, printable
from dataselect.select.base import Selection


def test_ids_and_previews_reach_the_terminal_escaped_and_short(capsys):
    hostile = "\x1b]0;owned\x07\x1b[31mred"
    selection = Selection(ids=[hostile, "x" * 100_000], scores=np.array([2.0, 1.0]), positions=np.arange(2), previews=[hostile, "fine text"])
    manifest = {"counts": {"selected": 2, "unique": 2, "read": 2, "skipped": 0}, "timings_s": {"total": 1.0}, "outputs": {"rows": None},
                "config": {"method": {"name": "rds"}, "output": {"dir": "out"}}}
    print_summary(manifest, selection, show_top=2)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned\\x07\\x1b[31mred" in out
    assert max(len(line) for line in out.splitlines()) < 300
    assert printable("abc", 10) == "abc" and printable("a" * 20, 10) == "aaaaaaa..."
