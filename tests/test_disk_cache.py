"""The disk cache is crash-safe, heals itself and degrades to a warning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from PIL import Image

import sktransfer._disk_cache as disk_cache
from sktransfer import DiskCache, PretrainedFeatureExtractor
from sktransfer.exceptions import CacheWarning


@pytest.fixture
def folder(tmp_path, rng):
    paths = []
    for i in range(48):
        path = tmp_path / "imgs" / f"{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)).save(path)
        paths.append(str(path))
    return paths


def same(a, b):
    """Equal up to float32 rounding that depends on the batch's composition."""
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _embed(paths, cache, **kw):
    return (
        PretrainedFeatureExtractor("test-cnn", cache=cache, **kw)
        .fit(paths)
        .transform(paths)
    )


@pytest.mark.parametrize(
    "damage", ["empty", "truncated", "flipped-byte", "foreign-npy", "bad-header"]
)
def test_bad_segments_are_detected_recomputed_and_replaced(tmp_path, folder, damage):
    paths = folder[:4]
    ref = _embed(paths, None)
    store = DiskCache(tmp_path / "cache")
    _embed(paths, store)
    (victim,) = store.files()  # one batch: one segment of 4 rows
    data = victim.read_bytes()
    if damage == "empty":
        victim.write_bytes(b"")
    elif damage == "truncated":
        victim.write_bytes(data[:-9])
    elif damage == "flipped-byte":  # in the matrix: only the CRC-32 sees it
        victim.write_bytes(data[:-5] + bytes([data[-5] ^ 0x40]) + data[-4:])
    elif damage == "foreign-npy":
        np.save(victim.with_suffix(""), np.ones(32, np.float32))
        victim.with_suffix(".npy").replace(victim)
    else:
        victim.write_bytes(data.replace(b'"width": 32', b'"width": 31'))
    for _ in range(2):  # healed for good, not on every call
        same(_embed(paths, store), ref)
    assert store.replaced == 4  # the segment's rows, recomputed once
    assert not victim.exists() and len(store) == 4
    fresh = DiskCache(tmp_path / "cache")  # another process reads the new one
    rows = fresh.get_many(list(store._index), width=32)
    assert all(r is not None for r in rows) and fresh.replaced == 0


def test_old_one_file_per_row_folders_are_still_read(tmp_path):
    folder = tmp_path / "old"
    good, bad = "ab" + "1" * 30, "cd" + "2" * 30
    for key, value in ((good, np.arange(8, dtype=np.float32)), (bad, None)):
        (folder / key[:2]).mkdir(parents=True)
        if value is None:
            (folder / key[:2] / f"{key}.npy").write_bytes(b"\x93NUMPY garbage")
        else:
            np.save(folder / key[:2] / f"{key}.npy", value)
    store = DiskCache(folder)
    row, missing = store.get_many([good, bad], width=8)
    np.testing.assert_array_equal(row, np.arange(8))
    assert missing is None and store.replaced == 1
    store.put_many([bad], np.ones((1, 8), np.float32))  # new rows: a segment
    assert store.get_many([bad], width=8)[0] is not None and len(store) == 2


def test_durability_batch_syncs_every_batch_and_interval_in_background(
    tmp_path, monkeypatch
):
    synced = []  # (thread, file) of each fsync under tmp_path
    real = os.fsync

    def spy(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(str(tmp_path)):  # not other tests' late syncs
            synced.append((threading.get_ident(), path))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    written = []  # the thread of each segment write
    real_write = disk_cache._write_segment

    def write_spy(*args):
        written.append(threading.get_ident())
        return real_write(*args)

    monkeypatch.setattr(disk_cache, "_write_segment", write_spy)
    monkeypatch.setattr(disk_cache, "WRITER_IDLE_SECONDS", 1.0)
    rows = np.ones((1, 4), np.float32)
    strict = DiskCache(tmp_path / "a", durability="batch")
    for i in range(3):
        strict.put_many([f"a{i}"], rows)
        assert len(synced) == 2 * (i + 1)  # the segment and its folder, at once
    synced.clear()
    lazy = DiskCache(tmp_path / "b")
    written.clear()
    for i in range(3):  # fast batches: grouped into one or two segments
        lazy.put_many([f"b{i}"], rows)
    me = threading.get_ident()
    assert all(t != me for t, _ in synced)  # put_many never waits for a sync
    assert all(t != me for t in written)  # ... nor for a write
    lazy.flush()  # ... flush waits until every segment is synced
    segments = {str(p) for p in lazy.files()}
    assert 1 <= len(segments) <= 2 and len(lazy) == 3
    assert segments <= {path for _, path in synced}
    assert str(lazy._seg_dir) in {path for _, path in synced}
    assert not lazy._busy and not lazy._pending  # nothing left to sync
    writer = lazy._writer  # idle, waiting for the next segment
    lazy.put_many(["b3"], rows)
    lazy.flush()
    assert lazy._writer is writer  # one thread serves the whole run
    writer.join(timeout=10)  # ... and stops once idle for WRITER_IDLE_SECONDS
    assert not writer.is_alive() and lazy._writer is None
    assert {str(p) for p in lazy.files()} <= {path for _, path in synced}
    with pytest.raises(ValueError, match="'durability' parameter"):
        DiskCache(tmp_path / "c", durability="never")


def test_the_writer_syncs_in_rounds_and_flush_syncs_the_rest(tmp_path, monkeypatch):
    """Segments written within SYNC_SECONDS of a sync round wait for the next
    round (one fsync round for many batches), and flush syncs them all."""
    synced = []
    real = os.fsync

    def spy(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(str(tmp_path)) and path.endswith(".seg"):
            synced.append(path)
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    monkeypatch.setattr(disk_cache, "SYNC_SECONDS", 60.0)
    store = DiskCache(tmp_path)
    rows = np.ones((1, 4), np.float32)
    for i in range(4):  # batches further apart than WRITE_SECONDS: 4 segments
        store.put_many([f"k{i}"], rows)
        deadline = time.monotonic() + 5
        while len(store._files()) <= i and time.monotonic() < deadline:
            time.sleep(0.01)  # the writer writes it soon after
        time.sleep(disk_cache.WRITE_SECONDS)
    assert len(store._files()) == 4
    assert len(synced) <= 1  # the first round only: the others wait
    store.flush()
    assert set(synced) == {str(p) for p in store.files()}


def test_rows_put_just_before_exit_are_written(tmp_path):
    """The second row is buffered (within WRITE_SECONDS of the first) when the
    script ends without flush(): the exit hook writes it."""
    script = textwrap.dedent(
        f"""
        import numpy as np
        from sktransfer import DiskCache
        store = DiskCache({str(tmp_path)!r})
        store.put_many(["a"], np.ones((1, 4), np.float32))
        store.put_many(["b"], np.ones((1, 4), np.float32))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert len(DiskCache(tmp_path)) == 2


def test_segments_of_other_processes_are_found(tmp_path):
    a, b = DiskCache(tmp_path), DiskCache(tmp_path)  # two handles, as two processes
    assert a.get_many(["k1"]) == [None]
    b.put_many(["k1", "k2"], np.ones((2, 3), np.float32))
    b.flush()  # as the end of b's embedding call does
    assert all(r is not None for r in a.get_many(["k1", "k2"], width=3))


def test_orphaned_temporary_files_are_removed(tmp_path, folder):
    store_dir = tmp_path / "cache"
    _embed(folder[:2], DiskCache(store_dir))
    sub = next(p for p in store_dir.iterdir() if p.is_dir())
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
    )
    pid = int(dead.stdout)  # a pid that has exited
    orphan = sub / f"abc.{disk_cache.HOST}.{pid}.x1.tmp"
    orphan.write_bytes(b"half a row")
    mine = sub / f"abd.{disk_cache.HOST}.{os.getpid()}.x2.tmp"  # a live writer's
    mine.write_bytes(b"being written")
    old_foreign = sub / "abe.otherhost.1.x3.tmp"
    old_foreign.write_bytes(b"?")
    os.utime(old_foreign, (time.time() - 7200,) * 2)
    DiskCache(store_dir).get_many(["zz"])  # a new process-level handle opens it
    assert not orphan.exists() and not old_foreign.exists() and mine.exists()


def test_an_unwritable_directory_is_a_warning_and_the_embeddings_come_back(
    tmp_path, folder
):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ref = _embed(folder[:3], None)
    with pytest.warns(CacheWarning, match="is not written"):
        out = _embed(folder[:3], DiskCache(blocker / "cache"))
    same(out, ref)


def test_a_full_disk_is_a_warning(tmp_path, folder, monkeypatch):
    def full(path, keys, matrix):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(disk_cache, "_write_segment", full)
    store = DiskCache(tmp_path / "cache")
    with pytest.warns(CacheWarning, match="No space left"):
        out = _embed(folder[:3], store)
    same(out, _embed(folder[:3], None))


def test_size_counts_disk_blocks_and_pruning_does_not_rescan_every_write(
    tmp_path, monkeypatch
):
    store = DiskCache(tmp_path, max_bytes=1 << 30, durability="batch")  # a file each
    scans = []
    real = DiskCache._files  # the listing that pruning rescans with
    monkeypatch.setattr(DiskCache, "_files", lambda self: scans.append(1) or real(self))
    rows = np.ones((1, 8), np.float32)
    for i in range(20):
        store.put_many([f"{i:04d}" + "k" * 30], rows)
    assert len(scans) == 1  # one scan to learn the size, then running totals
    on_disk = sum(os.stat(p).st_blocks * 512 for p in real(store))
    assert store.nbytes == on_disk >= 20 * 160  # blocks, not the small files
    store.max_bytes = on_disk // 2
    store.put_many(["9999" + "k" * 30], rows)  # over the limit: rescan and prune
    assert store.nbytes <= store.max_bytes


_CHILD = textwrap.dedent(
    """
    import sys, time
    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.backbones import load_backbone

    paths, cache = sys.argv[1].split(","), sys.argv[2]
    model = load_backbone("test-cnn").model

    def slow(module, args, out):  # one line per forward batch, then a pause
        print("batch", flush=True)
        time.sleep(0.3)

    ext = PretrainedFeatureExtractor("test-cnn", cache=cache, batch_size=4,
                                     num_workers=0).fit(paths)
    model.register_forward_hook(slow)  # after fit's width probe
    ext.transform(paths)
    print("done", flush=True)
    """
)


def test_sigkill_part_way_then_resume(tmp_path, folder, count_embeds):
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, ",".join(folder), str(cache)],
        stdout=subprocess.PIPE,
        text=True,
    )
    batches = 0
    for line in child.stdout:  # wait until 5 batches have run the network
        batches += line.startswith("batch")
        if batches == 5:
            break
    time.sleep(0.15)  # inside the 5th batch's pause: 4 batches are on disk
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    finished = len(DiskCache(cache))
    assert 4 * 4 <= finished < len(folder)  # finished batches survived the kill
    out = _embed(folder, DiskCache(cache))
    same(out, _embed(folder, None))
    computed = count_embeds["n"] - len(folder)  # minus the uncached reference
    assert computed == len(folder) - finished  # the finished part was not redone
    assert len(DiskCache(cache)) == len(folder)


def test_keyed_chunks_dedupe_and_hit_across_chunk_boundaries(tmp_path):
    # keys are computed chunk by chunk (the first 256 rows, then chunks 8
    # times the last, ahead in a thread): a row repeated in a later chunk is
    # embedded once, and a second pass is served entirely from the cache
    rng = np.random.default_rng(0)
    X = list(rng.integers(0, 255, (300, 8, 8, 3), dtype=np.uint8))
    X += [X[3].copy(), X[299].copy()]  # repeats of the first and second chunk
    ext = PretrainedFeatureExtractor("test-cnn", cache=None).fit(X[:2])
    expected = ext.transform(X)
    store = DiskCache(tmp_path / "c")
    got = ext.set_params(cache=store).transform(X)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert len(store) == 300  # the repeats were not embedded again
    misses = store.misses
    again = ext.transform(X)
    np.testing.assert_array_equal(again, got)
    assert store.misses == misses and store.hits >= len(X)


def test_a_forked_child_writes_and_flushes_with_its_own_writer(tmp_path):
    """A fork copies the parent's lock as it is: held, if the parent's writer
    thread held it at that moment. The child must start anew, not hang."""
    store = DiskCache(tmp_path)
    rows = np.ones((1, 4), np.float32)
    store.put_many(["parent"], rows)
    held, release = threading.Event(), threading.Event()

    def hold():  # another thread holds the lock across the fork, as a writer may
        with store._lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if it wrote and synced
        code = 1
        try:
            signal.alarm(20)  # a deadlock ends the child instead of the test run
            store.put_many(["child"], rows)
            store.flush()
            code = 0 if store.get_many(["child"], width=4)[0] is not None else 2
        finally:
            os._exit(code)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    store.flush()
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(DiskCache(tmp_path)) == 2
