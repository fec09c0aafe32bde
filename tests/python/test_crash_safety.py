"""A save killed at a random moment (SIGKILL) never leaves a torn file: the
target always holds the complete old or the complete new file, and the
temporaries of killed writers are removed by the next successful save."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

import ztensor
from ztensor.numpy import load_file, save_file

CHILD = r"""
import sys, numpy as np
from ztensor.numpy import save_file
path = sys.argv[1]
new = {f"t{i}": np.full((256, 1024), i + 1, np.float32) for i in range(8)}
while True:
    save_file(new, path, compression=(int(sys.argv[2]) or False))
"""


def _state(path):
    """'old' or 'new' by content; anything else is a torn or wrong file."""
    t = load_file(path)
    if list(t) == ["old"] and float(t["old"][0]) == 7.0:
        return "old"
    if list(t) == [f"t{i}" for i in range(8)] and all(float(t[f"t{i}"][0, 0]) == i + 1 for i in range(8)):
        return "new"
    return f"unexpected content: {list(t)}"


def test_sigkill_during_save_never_tears_the_target(tmp_path):
    path = tmp_path / "model.zt"
    save_file({"old": np.full(1000, 7.0, np.float32)}, path)
    rng = random.Random(1234)
    seen = {"old": 0, "new": 0}
    kills = 0
    for i in range(30):
        if i % 10 == 0:  # restart from the old content now and then
            save_file({"old": np.full(1000, 7.0, np.float32)}, path)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(i % 2 * 3)])
        time.sleep(0.25 + rng.random() * 0.35)  # import time + somewhere inside a save
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills += 1
        state = _state(path)
        assert state in seen, state
        seen[state] += 1
        with ztensor.Reader(path) as r:
            r.verify()
    assert kills == 30 and seen["new"] > 0, seen
    # Killed writers leave temporaries; the next successful save removes them.
    # A random kill may land between two saves, so make sure of one: stop a
    # writer while its temporary is on disk, then kill it.
    assert _kill_writer_mid_save(path), "never caught a writer with its temporary on disk"
    stale = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert stale, "the writer was killed mid-save and should have left its temporary"
    save_file({"old": np.full(1000, 7.0, np.float32)}, path)
    left = sorted(n for n in os.listdir(tmp_path) if n != "model.zt")
    assert left == [], left


def _temporaries(path):
    return [n for n in os.listdir(path.parent) if n.endswith(".tmp")]


def _kill_writer_mid_save(path, tries=20):
    """SIGSTOP a saving child, and SIGKILL it only if a temporary is on disk
    while it is stopped (then it cannot rename it away); True once done."""
    for _ in range(tries):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "0"])
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if _temporaries(path):
                    child.send_signal(signal.SIGSTOP)
                    if _temporaries(path):
                        return True
                    child.send_signal(signal.SIGCONT)
                time.sleep(0.001)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    return False
