"""One Reader shared by several threads, many Readers of one file, and a
writer saving while others read: every read is correct and nothing hangs
(reads release the GIL, so the threads really overlap)."""

import threading

import numpy as np

import ztensor
from ztensor.numpy import load_file, save_file


def _tensors(seed):
    rng = np.random.default_rng(seed)
    return {f"w{i}": rng.standard_normal((64, 257)).astype(np.float32) for i in range(40)}


def _run(threads, timeout=120):
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung"


def test_one_reader_many_threads_and_a_concurrent_writer(tmp_path):
    expected = _tensors(0)
    path = tmp_path / "shared.zt"
    with ztensor.Writer(path) as w:
        for k, v in expected.items():
            w.add(k, v, compress=(k.endswith("3")), checksum="crc32c")
    reader = ztensor.Reader(path)
    errors = []

    def read_loop(copy):
        try:
            for _ in range(30):
                got = reader.load_numpy(copy=copy)
                for k, v in expected.items():
                    assert np.array_equal(got[k], v), k
                reader.verify()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    def many_readers():
        try:
            for _ in range(30):
                got = load_file(path, copy=True)
                assert all(np.array_equal(got[k], v) for k, v in expected.items())
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    def writer_loop():
        try:
            for i in range(20):
                other = tmp_path / f"other{i % 3}.zt"
                data = _tensors(i + 1)
                save_file(data, other, compression=bool(i % 2))
                back = load_file(other)
                assert all(np.array_equal(back[k], v) for k, v in data.items())
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=read_loop, args=(c,)) for c in (False, True, False, True)]
    threads += [threading.Thread(target=many_readers), threading.Thread(target=writer_loop)]
    _run(threads)
    assert errors == []
    reader.close()


def test_close_while_other_threads_hold_arrays(tmp_path):
    expected = _tensors(5)
    path = tmp_path / "c.zt"
    save_file(expected, path)
    reader = ztensor.Reader(path)
    arrays = reader.load_numpy()
    reader.close()
    # Arrays outlive the reader; reading them from threads is fine.
    sums = []
    threads = [
        threading.Thread(target=lambda: sums.append(sum(float(a.sum()) for a in arrays.values())))
        for _ in range(4)
    ]
    _run(threads)
    assert len(set(sums)) == 1 and sums[0] == sum(float(v.sum()) for v in expected.values())


def test_copies_after_fork_work_while_the_pool_cools(tmp_path):
    """A forked child (a DataLoader worker) has none of the parent's threads:
    neither the parallel-copy pool (rayon's global pool would hang it) nor
    the buffer pool's cooling thread. Its copies must still work, and the
    parent's too."""
    import os
    import time

    big = np.arange(3 << 20, dtype=np.float32)  # 12 MiB: a pooled buffer
    path = tmp_path / "big.zt"
    save_file({"big": big}, path)
    for _ in range(2):
        del_me = load_file(path, copy=True)
        del del_me
    pid = os.fork()
    if pid == 0:  # the child: exit status says whether its copies were right
        ok = True
        try:
            for _ in range(3):
                ok &= bool(np.array_equal(load_file(path, copy=True)["big"], big))
            time.sleep(2.5)  # past the cooling delay, then again
            ok &= bool(np.array_equal(load_file(path, copy=True)["big"], big))
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung (rayon's pool does not survive fork)")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    assert np.array_equal(load_file(path, copy=True)["big"], big)
