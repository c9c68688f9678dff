"""Background jobs: JSON-lines progress, failures with a message, cancel that kills the process tree.

Plain Python child processes (no torch, no slicer-core needed), so these run everywhere.
"""

import json
import os
import sys
import textwrap
import time

import pytest
from slicer_helpers import MODULE_DIR

from DeepSparseSlicerLib.jobs import CANCELLED, FAILED, SUCCEEDED, Job


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_json_lines_become_progress_results_and_log():
    seen = []
    job = Job([_python('''
        import json
        print("plain log line")
        for i in range(3):
            print(json.dumps({"event": "progress", "task": "fdk", "done": i + 1, "total": 3, "eta_s": 2 - i}), flush=True)
        print(json.dumps({"event": "result", "volume": "out.nrrd"}))
        print(json.dumps({"event": "message", "text": "DiCE: 0.11 M parameters"}))
        print("{not json")
    ''')], name="test", on_progress=seen.append).start()
    assert job.wait(30) == SUCCEEDED
    assert [p["done"] for p in seen] == [1, 2, 3]
    assert seen[-1]["eta_s"] == 0 and seen[-1]["part"] == 1 and seen[-1]["parts"] == 1
    assert job.results == [{"volume": "out.nrrd"}]
    assert job.log == ["plain log line", "DiCE: 0.11 M parameters", "{not json"]
    assert job.returncode == 0 and job.error is None


def test_error_event_is_the_failure_message():
    job = Job([_python('''
        import json, sys
        print(json.dumps({"event": "error", "message": "projections have shape (5, 64, 64) but the geometry expects (6, 64, 64)"}))
        sys.exit(2)
    ''')], name="reconstruction").start()
    assert job.wait(30) == FAILED
    assert job.error.startswith("projections have shape (5, 64, 64)")


def test_a_process_that_dies_is_reported_with_how_it_died():
    code = "import os, signal; print('loading model'); os.kill(os.getpid(), signal.SIGKILL)" if os.name != "nt" \
        else "import os; print('loading model'); os._exit(3)"
    job = Job([_python(code)], name="DiCE reconstruction").start()
    assert job.wait(30) == FAILED
    assert "stopped unexpectedly" in job.error and "DiCE reconstruction" in job.error
    if os.name != "nt":
        assert "SIGKILL" in job.error
    assert "loading model" in job.error  # the last words of the process


def test_a_command_that_cannot_start_fails_at_once():
    done = []
    job = Job([["/nonexistent/python-for-deepsparse"]], name="simulation")
    job.add_done_callback(done.append)
    job.start()
    assert job.status == FAILED and "cannot start" in job.error and done == [job]


def test_commands_run_in_sequence_and_stop_at_the_first_failure(tmp_path):
    marker = tmp_path / "second_ran"
    ok = Job([_python("print('step1')"), _python(f"open({str(marker)!r}, 'w').write('x')")]).start()
    assert ok.wait(30) == SUCCEEDED and marker.exists()
    marker.unlink()
    bad = Job([_python("import sys; sys.exit(1)"), _python(f"open({str(marker)!r}, 'w').write('x')")]).start()
    assert bad.wait(30) == FAILED and not marker.exists()


def test_a_failing_done_callback_turns_success_into_a_failure_with_its_message():
    job = Job([_python("pass")], name="simulation")

    def import_outputs(j):
        raise RuntimeError("output file missing")

    after = []
    job.add_done_callback(import_outputs)
    job.add_done_callback(lambda j: after.append(j.status))
    job.start().wait(30)
    assert job.status == FAILED and "output file missing" in job.error
    assert after == [FAILED]  # later callbacks still run, and see the failure


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent to reap it counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(os.name == "nt", reason="checks POSIX process groups")
def test_cancel_kills_the_whole_process_tree(tmp_path):
    pids = tmp_path / "pids.json"
    job = Job([_python(f'''
        import json, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        open({str(pids)!r}, "w").write(json.dumps([child.pid]))
        print('{{"event": "progress", "done": 0, "total": 1}}', flush=True)
        time.sleep(600)
    ''')], name="finetuning").start()
    deadline = time.monotonic() + 30
    while not job.progress and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.05)
    assert job.progress, "the job did not start"
    child = json.loads(pids.read_text())[0]
    done = []
    job.add_done_callback(done.append)
    t0 = time.monotonic()
    job.cancel()
    assert job.status == CANCELLED and done == [job]
    assert time.monotonic() - t0 < 10
    for pid in (job.pid, child):  # the grandchild ignored SIGTERM and still died
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"process {pid} survived the cancel")
    assert not job.poll()  # nothing left to do


def test_wait_with_a_timeout_cancels():
    job = Job([_python("import time; time.sleep(60)")], name="slow").start()
    assert job.wait(timeout=0.5) == CANCELLED
    assert "longer than" in job.error


@pytest.mark.skipif(os.name == "nt", reason="checks POSIX process groups")
def test_cancel_does_not_wait_and_cleanup_waits_for_the_tree(tmp_path):
    """Issue 18, item 6: a cancel used to wait up to 2 x 3 s for a process that ignores SIGTERM, on
    the GUI thread. Now it returns at once; the working folder goes only once the tree is gone (the
    process could still be writing into it)."""
    from DeepSparseSlicerLib.background import Background

    work = tmp_path / "work"
    work.mkdir()
    job = Job([_python(f'''
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('{{"event": "progress", "done": 0, "total": 1}}', flush=True)
        while True:
            open({str(work / "still_writing")!r}, "w").write("x")
            time.sleep(0.01)
    ''')], name="finetuning", cwd=str(work))
    Background.start(job, lambda j: None, work)
    deadline = time.monotonic() + 30
    while not job.progress and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.02)
    assert job.progress, "the job did not start"
    pid, t0 = job.pid, time.monotonic()
    job.cancel("the scene was closed")
    assert time.monotonic() - t0 < 0.5
    assert job.status == CANCELLED and job.error == "finetuning cancelled: the scene was closed"
    assert _alive(pid) and work.exists()  # SIGTERM ignored: still running, its folder kept
    deadline = time.monotonic() + 15
    while work.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not work.exists() and not _alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_job_dies_with_a_crashed_parent(tmp_path):
    """Issue 18, item 6: a job runs in its own session (for the group cancel); if Slicer crashes it
    must not run on. A parent process starts a long job, reports its pid and dies abruptly."""
    import subprocess

    parent = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(MODULE_DIR)!r})
        from DeepSparseSlicerLib.jobs import Job
        job = Job([[sys.executable, "-c", "import time; time.sleep(60)"]], name="long").start()
        print(job.pid, flush=True)
        time.sleep(0.5)
        os._exit(9)   # a crash: no cleanup, no cancel
    """)
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        raise AssertionError("the job outlived its parent")
