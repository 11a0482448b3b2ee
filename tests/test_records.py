"""Run records: never overwritten, read back in the order the runs started."""

from __future__ import annotations

from dorc.records import read_records, write_record
from dorc.result import RunResult, StepError


def test_records_in_the_same_millisecond_are_kept_and_read_in_order(tmp_path):
    state = tmp_path / ".dorc"
    started = 1_790_000_000.123
    first = RunResult("census", "raw", "local", "local", started_at=started)
    second = RunResult("census", "raw", "local", "local", started_at=started,
                       error=StepError(type="ValueError", message="second run failed"))
    p1 = write_record(state, first)
    p2 = write_record(state, second)
    assert p1 != p2 and p1.exists() and p2.exists()
    docs = read_records(state, pipeline="census")
    assert [d["status"] for d in docs] == ["succeeded", "failed"]  # the newest last
    assert (state / ".gitignore").read_text().strip().endswith("*")
