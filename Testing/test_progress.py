"""Progress for logs (issue 17): when stderr is not a terminal, a plain line every few seconds."""

from __future__ import annotations

import re

import pytest

from deepsparse_core import progress as P


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: now[0])
    P.set_mode()
    return now


def test_a_log_gets_a_plain_line_every_interval_and_at_the_end(clock, capsys):
    """capsys' stderr is not a terminal: no tqdm carriage returns, one line per LOG_INTERVAL_S."""
    with P.progress(20, "sart") as bar:
        for _ in range(20):
            clock[0] += 1.0  # one second per iteration: a line at 5, 10, 15 s and the last at 20 s
            bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines == ["sart: 25% (5/20), 0:05 elapsed, ETA 0:15", "sart: 50% (10/20), 0:10 elapsed, ETA 0:10",
                     "sart: 75% (15/20), 0:15 elapsed, ETA 0:05", "sart: 100% (20/20), 0:20 elapsed"]


def test_quick_work_prints_nothing(clock, capsys):
    """Work shorter than the interval stays silent (a failing command keeps its one error line)."""
    with P.progress(3, "fdk") as bar:
        for _ in range(3):
            clock[0] += 1.0
            bar.update(1)
    assert capsys.readouterr().err == ""


def test_quiet_and_json_modes_print_no_log_lines(clock, capsys):
    P.set_mode(quiet=True)
    with P.progress(2, "x") as bar:
        clock[0] += 10
        bar.update(2)
    P.set_mode(json_lines=True)
    with P.progress(2, "y") as bar:
        clock[0] += 10
        bar.update(2)
    P.set_mode()
    out = capsys.readouterr()
    assert out.err == "" and re.fullmatch(r'\{"event": "progress", "task": "y".*\}\n', out.out)


def test_hours_are_written_as_clock_time():
    assert P.log_line({"task": "train", "done": 1, "total": 4, "elapsed_s": 3725.0, "eta_s": 11175.0}) == \
        "train: 25% (1/4), 1:02:05 elapsed, ETA 3:06:15"


def test_the_end_line_is_printed_once(clock, capsys):
    """A loop that goes on past its total (a time-bounded run) does not repeat the end line."""
    with P.progress(2, "train") as bar:
        for _ in range(5):
            clock[0] += 6.0
            bar.update(1)
    assert capsys.readouterr().err.splitlines() == ["train: 50% (1/2), 0:06 elapsed, ETA 0:06",
                                                    "train: 100% (2/2), 0:12 elapsed"]
