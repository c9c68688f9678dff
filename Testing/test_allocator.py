"""keep_freed_memory: after it, a large block freed and allocated again is reused, not page-faulted in."""

import subprocess
import sys

import pytest

from deepsparse_core.training import allocator

pytestmark = pytest.mark.skipif(allocator._glibc() is None, reason="glibc malloc only")

PROBE = """
import resource, sys, torch
from deepsparse_core.training.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for _ in range(3):                      # warm up: the heap grows once
    torch.empty(16 * 2 ** 20).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):                     # 64 MiB, above glibc's largest mmap threshold (32 MiB)
    torch.empty(16 * 2 ** 20).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


def test_a_freed_block_is_reused_instead_of_faulted_in_again():
    kept, default = _faults("keep"), _faults("default")
    assert kept < 200                        # 20 x 64 MiB re-faulted would be 327,680 small pages
    assert default > 10 * (kept + 1)         # the control: glibc's default maps the block afresh


def test_it_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() is False
