"""Run statistics (stats.py): bad inputs counted by the kind of reason, without its details."""
from __future__ import annotations

from dataselect.stats import BadInput, SourceStats


def test_bad_inputs_are_counted_by_a_whole_reason_kind():
    stats = SourceStats("pool", quiet=True)
    for line, reason in enumerate(["no text field (the record has: 'id', 'content'; looked for 'messages', 'text')",
                                   "no text field (the record has: 'id', 'body'; looked for 'messages', 'text')",
                                   "malformed JSON (Expecting ',' delimiter: line 1 column 9 (char 8))",
                                   "over-long: 120,000 characters > input.max_chars=100,000", "empty text"], start=1):
        stats.record_bad(BadInput("pool.jsonl", line, reason))
    assert stats.to_dict()["skipped_by_reason"] == {"no text field": 2, "malformed JSON": 1, "over-long": 1, "empty text": 1}
