"""transform_to_file: embeddings straight to .npy / Parquet, chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

from sktransfer import DiskCache, PretrainedFeatureExtractor
from sktransfer._writers import EmbeddingWriter
from sktransfer.exceptions import InputError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def ext(image_files):
    return PretrainedFeatureExtractor("test-cnn", cache=None).fit(image_files[0][:1])


@pytest.mark.parametrize("chunk_size", [1, 5, 100])
def test_npy_equals_transform(ext, image_files, tmp_path, chunk_size):
    paths = image_files[0]
    out = tmp_path / "e.npy"
    assert ext.transform_to_file(paths, out, chunk_size=chunk_size) == {}
    got = np.load(out, mmap_mode="r")
    assert got.shape == (len(paths), ext._n_features_out)
    np.testing.assert_allclose(got, ext.transform(paths), rtol=1e-5, atol=1e-6)
    assert not list(tmp_path.glob(".*partial*"))  # no temporary left behind


def test_parquet_has_ids_and_vectors(ext, image_files, tmp_path):
    paths = image_files[0]
    out = tmp_path / "e.parquet"
    ext.transform_to_file(paths, out, ids=[f"f{i}" for i in range(12)], chunk_size=5)
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [f"f{i}" for i in range(12)]
    vectors = np.array(table.column("embedding").to_pylist(), np.float32)
    np.testing.assert_allclose(vectors, ext.transform(paths), rtol=1e-5, atol=1e-6)
    assert pq.ParquetFile(out).num_row_groups == 3  # one per chunk


def test_existing_file_is_never_replaced_unless_asked(ext, image_files, tmp_path):
    out = tmp_path / "e.npy"
    out.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ext.transform_to_file(image_files[0], out)
    assert out.read_bytes() == b"mine"
    ext.transform_to_file(image_files[0], out, overwrite=True)
    assert np.load(out).shape[0] == 12


def test_bad_suffix_and_ids_length(ext, image_files, tmp_path):
    with pytest.raises(ValueError, match=r"\.npy or \.parquet"):
        ext.transform_to_file(image_files[0], tmp_path / "e.csv")
    with pytest.raises(ValueError, match="ids has 2 entries"):
        ext.transform_to_file(image_files[0], tmp_path / "e.npy", ids=["a", "b"])


def test_errors_name_their_row_in_the_whole_input(image_files, tmp_path):
    paths = list(image_files[0])
    paths[7] = str(tmp_path / "missing.jpg")
    strict = PretrainedFeatureExtractor("test-cnn", cache=None).fit(paths[:1])
    with pytest.raises(InputError, match=r"^row 7: image file"):
        strict.transform_to_file(paths, tmp_path / "e.npy", chunk_size=5)
    assert not (tmp_path / "e.npy").exists()
    assert not list(tmp_path.glob(".*partial*"))

    lenient = PretrainedFeatureExtractor("test-cnn", cache=None, on_error="nan")
    lenient.fit(paths[:1])
    errors = lenient.transform_to_file(paths, tmp_path / "n.npy", chunk_size=5)
    assert list(errors) == [7] and errors[7].startswith("row 7:")
    got = np.load(tmp_path / "n.npy")
    assert np.isnan(got[7]).all() and np.isfinite(np.delete(got, 7, 0)).all()

    lenient.transform_to_file(
        paths, tmp_path / "s.parquet", chunk_size=5, skip_errors=True
    )
    assert pq.read_table(tmp_path / "s.parquet").column("id").to_pylist() == [
        i for i in range(12) if i != 7
    ]
    lenient.transform_to_file(paths, tmp_path / "s.npy", chunk_size=5, skip_errors=True)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), np.delete(got, 7, 0))


def test_interrupted_run_resumes_through_the_disk_cache(
    image_files, tmp_path, monkeypatch, count_embeds
):
    paths = image_files[0]
    ext = PretrainedFeatureExtractor(
        "test-cnn", cache=DiskCache(tmp_path / "cache"), batch_size=4
    ).fit(paths[:1])
    original = EmbeddingWriter.write
    calls = {"n": 0}

    def crash_on_second_chunk(self, rows, ids=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, rows, ids)

    monkeypatch.setattr(EmbeddingWriter, "write", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        ext.transform_to_file(paths, tmp_path / "e.npy", chunk_size=8)
    assert not (tmp_path / "e.npy").exists()
    assert count_embeds["n"] == 12  # both chunks were embedded, the 2nd not written
    monkeypatch.setattr(EmbeddingWriter, "write", original)
    ext.transform_to_file(paths, tmp_path / "e.npy", chunk_size=8)
    assert count_embeds["n"] == 12  # all 12 came from the cache
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), ext.transform(paths))


def test_empty_parquet_output_is_typed(tmp_path):
    w = EmbeddingWriter(tmp_path / "e.parquet", 0, 3)
    w.finish()
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0


def test_every_row_skipped_leaves_an_empty_npy(tmp_path):
    w = EmbeddingWriter(tmp_path / "e.npy", 5, 3)
    w.finish()
    assert np.load(tmp_path / "e.npy").shape == (0, 3)


def test_a_killed_writers_partial_file_is_removed_by_the_next_run(tmp_path):
    """A writer SIGKILLed mid-write leaves .NAME.<host>.<pid>.partial; the next
    writer of that output removes it (a live writer's file is kept)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from sktransfer._orphans import HOST

    out = tmp_path / "emb.npy"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, numpy as np\n"
            "from sktransfer._writers import EmbeddingWriter\n"
            "w = EmbeddingWriter(sys.argv[1], 10, 4)\n"
            "w.write(np.zeros((2, 4), np.float32))\n"
            "print('written', flush=True)\n"
            "time.sleep(60)\n",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "written"
    dead = tmp_path / f".emb.npy.{HOST}.{child.pid}.partial"
    assert dead.exists()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    live = tmp_path / f".emb.npy.{HOST}.{os.getpid()}.partial.trim"  # ours: alive
    live.write_bytes(b"")
    other = tmp_path / ".emb.npy.otherhost.1.partial"  # another machine, recent
    other.write_bytes(b"")
    stale = tmp_path / ".emb.npy.otherhost.2.partial"
    stale.write_bytes(b"")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    ext = PretrainedFeatureExtractor("test-text").fit(["a"])
    ext.transform_to_file(["a", "b"], out)
    assert not dead.exists() and not stale.exists()
    assert live.exists() and other.exists()
