"""Run statistics (stats.py): bad inputs counted by the kind of reason, without its details."""
from __future__ import annotations

import logging

from dataselect.stats import MAX_PRINTED_BAD, BadInput, BadInputPrinter, SourceStats


def test_bad_inputs_are_counted_by_a_whole_reason_kind():
    stats = SourceStats("pool")
    for line, reason in enumerate(["no text field (the record has: 'id', 'content'; looked for 'messages', 'text')",
                                   "no text field (the record has: 'id', 'body'; looked for 'messages', 'text')",
                                   "malformed JSON (Expecting ',' delimiter: line 1 column 9 (char 8))",
                                   "over-long: 120,000 characters > input.max_chars=100,000", "empty text"], start=1):
        stats.record_bad(BadInput("pool.jsonl", line, reason))
    assert stats.to_dict()["skipped_by_reason"] == {"no text field": 2, "malformed JSON": 1, "over-long": 1, "empty text": 1}


def shard_of(file: str, reason: str, lines: range) -> SourceStats:
    shard = SourceStats("pool")
    for line in lines:
        shard.record_bad(BadInput(file, line, reason))
    return shard


def test_a_file_with_one_systematic_fault_prints_two_lines_not_one_per_record(caplog):
    printer = BadInputPrinter("pool")
    no_text = "no text field (the record has: 'content', 'id'; looked for 'messages', 'text')"
    with caplog.at_level(logging.WARNING):
        printer.show(shard_of("odd.jsonl", no_text, range(1, 40)))
        printer.show(shard_of("odd.jsonl", no_text, range(40, 70)))
        printer.show(shard_of("good.jsonl", "malformed JSON (Expecting value)", range(5, 6)))
        printer.close()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [f"skipped bad pool input: odd.jsonl:1: {no_text}", "skipped bad pool input: good.jsonl:5: malformed JSON (Expecting value)",
                     "skipped 68 more bad pool inputs in odd.jsonl: no text field"]


def test_the_printer_prints_at_most_its_cap_of_first_records_and_counts_the_rest(caplog):
    printer = BadInputPrinter("pool")
    with caplog.at_level(logging.WARNING):
        for number in range(MAX_PRINTED_BAD + 5):
            printer.show(shard_of(f"f{number}.jsonl", "empty text", range(1, 2)))
        printer.close()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == MAX_PRINTED_BAD + 5 + 0 and lines[MAX_PRINTED_BAD].startswith(f"skipped 1 bad pool input in f{MAX_PRINTED_BAD}.jsonl")
