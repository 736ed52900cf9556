"""``sktransfer embed`` as people with folders and tables use it (subprocess)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sktransfer import DiskCache, PretrainedFeatureExtractor


def run(*args, cwd):
    env = {**os.environ, "SKTRANSFER_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sktransfer", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture
def tree(tmp_path, rng):
    """imgs/ with PNGs, a nested JPEG, a non-image file and a broken JPEG."""
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(
            imgs / f"{i}.png"
        )
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(
        imgs / "sub" / "n.jpg"
    )
    (imgs / "notes.txt").write_text("not an image")
    return tmp_path


def reference(paths):
    ext = PretrainedFeatureExtractor("test-cnn", cache=None).fit(paths)
    return ext.transform(paths)


def test_folder_recursive_with_extension_filter_to_npy(tree):
    r = run("embed", "test-cnn", "imgs", "-o", "out.npy", "--no-progress", cwd=tree)
    assert r.returncode == 0, r.stderr
    assert "wrote out.npy: 5 rows x 32" in r.stdout
    paths = sorted(
        str(p) for p in (tree / "imgs").rglob("*") if p.suffix in (".png", ".jpg")
    )
    np.testing.assert_allclose(
        np.load(tree / "out.npy"), reference(paths), rtol=1e-5, atol=1e-7
    )
    r = run(
        "embed",
        "test-cnn",
        "imgs",
        "-o",
        "only.npy",
        "--ext",
        ".jpg",
        "--no-progress",
        cwd=tree,
    )
    assert "1 rows" in r.stdout


def test_never_overwrites_unless_forced(tree):
    first = run("embed", "test-cnn", "imgs", "-o", "out.npy", "--no-progress", cwd=tree)
    assert first.returncode == 0
    before = (tree / "out.npy").read_bytes()
    again = run("embed", "test-cnn", "imgs/0.png", "-o", "out.npy", cwd=tree)
    assert again.returncode == 2
    assert (
        again.stderr.strip()
        == "sktransfer embed: error: out.npy exists; not replacing it (pass --force to replace it)"
    )
    assert (tree / "out.npy").read_bytes() == before
    forced = run(
        "embed",
        "test-cnn",
        "imgs/0.png",
        "-o",
        "out.npy",
        "--force",
        "--no-progress",
        cwd=tree,
    )
    assert forced.returncode == 0 and np.load(tree / "out.npy").shape == (1, 32)
    (tree / "out").write_text("mine")  # the exact name is checked, not a stem
    ok = run(
        "embed", "test-cnn", "imgs/0.png", "-o", "other.npy", "--no-progress", cwd=tree
    )
    assert ok.returncode == 0 and (tree / "out").read_text() == "mine"


@pytest.mark.parametrize("policy, rows", [("skip", 5), ("nan", 6)])
def test_on_error_policies_write_a_failures_file(tree, policy, rows):
    (tree / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    r = run(
        "embed",
        "test-cnn",
        "imgs",
        "-o",
        "out.parquet",
        "--on-error",
        policy,
        "--no-progress",
        cwd=tree,
    )
    assert r.returncode == 0, r.stderr
    table = pd.read_parquet(tree / "out.parquet")
    assert len(table) == rows and len(table.embedding[0]) == 32
    assert ("imgs/broken.jpg" in set(table.id)) == (policy == "nan")
    with open(tree / "out.parquet.failures.csv") as f:
        (failure,) = list(csv.DictReader(f))
    assert (
        failure["id"] == "imgs/broken.jpg"
        and "not a decodable image" in failure["error"]
    )
    assert "1 input(s) could not be embedded" in r.stderr


def test_csv_column_with_ids_and_relative_paths(tree):
    pd.DataFrame({"file": ["imgs/0.png", "imgs/1.png"], "key": ["a", "b"]}).to_csv(
        tree / "t.csv", index=False
    )
    r = run(
        "embed",
        "test-cnn",
        "../t.csv",
        "--column",
        "file",
        "--id-column",
        "key",
        "-o",
        "t.parquet",
        "--no-progress",
        cwd=tree / "imgs",
    )
    assert r.returncode == 0, r.stderr
    table = pd.read_parquet(tree / "imgs" / "t.parquet")
    assert table.id.tolist() == ["a", "b"]
    np.testing.assert_allclose(
        np.stack(table.embedding),
        reference([str(tree / "imgs/0.png"), str(tree / "imgs/1.png")]),
        rtol=1e-5,
        atol=1e-7,
    )


def test_several_text_files_are_all_read(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("three\n")
    r = run(
        "embed",
        "test-text",
        "a.txt",
        "b.txt",
        "-o",
        "t.npy",
        "--no-progress",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    ext = PretrainedFeatureExtractor("test-text").fit(["x"])
    np.testing.assert_allclose(
        np.load(tmp_path / "t.npy"),
        ext.transform(["one", "two", "three"]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_cache_makes_a_rerun_resume(tree):
    args = ("embed", "test-cnn", "imgs", "--cache", "cache", "--no-progress")
    assert run(*args, "-o", "a.npy", cwd=tree).returncode == 0
    assert len(DiskCache(tree / "cache")) == 5
    files = sorted((tree / "cache").rglob("*.seg"))
    stamps = [f.stat().st_mtime_ns for f in files]
    assert run(*args, "-o", "b.npy", cwd=tree).returncode == 0
    assert [f.stat().st_mtime_ns for f in files] == stamps  # served, not rewritten
    np.testing.assert_array_equal(np.load(tree / "a.npy"), np.load(tree / "b.npy"))


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("embed", "test-cnnn", "imgs", "-o", "x.npy"),
            "Unknown backbone 'test-cnnn'. Did you mean 'test-cnn'",
        ),
        (
            ("embed", "test-cnn", "imgs", "-o", "x.npy", "--batch-size", "0"),
            "argument --batch-size: must be a positive integer or 'auto', got '0'",
        ),
        (
            ("embed", "test-cnn", "imgs", "-o", "missing/x.npy"),
            "the output folder missing does not exist",
        ),
        (
            ("embed", "test-cnn", "imgs", "-o", "x.csv"),
            "must end with .npy or .parquet",
        ),
        (
            ("embed", "test-cnn", "nothere", "-o", "x.npy"),
            "no such file or folder: nothere",
        ),
        (
            ("embed", "test-cnn", "imgs", "imgs/notes.txt", "-o", "x.npy"),
            "notes.txt' is not a decodable image .*pass --on-error skip or nan",
        ),
        (
            ("embed", "test-cnn", "t.csv", "--column", "nope", "-o", "x.npy"),
            "has no column 'nope'",
        ),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tree, args, message):
    pd.DataFrame({"file": ["imgs/0.png"]}).to_csv(tree / "t.csv", index=False)
    r = run(*args, cwd=tree)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    assert any(__import__("re").search(message, line) for line in lines[-1:]), r.stderr
    assert not list(tree.glob("x.*")) and not list(tree.glob(".x.*"))


SEPARATORS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def test_text_file_rows_are_its_newline_lines(tmp_path):
    """A 5-line file (wc -l) with every character str.splitlines also breaks
    on gives 5 rows, in order; \\r\\n ends a line; the ids are file:line."""
    lines = [f"line {i} {SEPARATORS[i]}middle{SEPARATORS[-1 - i]}" for i in range(5)]
    path = tmp_path / "t.txt"
    path.write_bytes(
        ("\r\n".join(lines[:2]) + "\n" + "\n".join(lines[2:]) + "\n").encode()
    )
    wc = subprocess.run(["wc", "-l", str(path)], capture_output=True, text=True)
    assert int(wc.stdout.split()[0]) == 5
    out = tmp_path / "o.parquet"
    res = run(
        "embed", "test-text", str(path), "-o", str(out), "--no-progress", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    table = pd.read_parquet(out)
    assert table["id"].tolist() == [f"{path}:{i}" for i in range(1, 6)]
    ext = PretrainedFeatureExtractor("test-text").fit(lines)
    np.testing.assert_allclose(
        np.stack(table["embedding"]), ext.transform(lines), atol=1e-6
    )


def test_text_file_without_final_newline_says_so(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a\nb\nc")  # wc -l: 2
    out = tmp_path / "o.npy"
    res = run(
        "embed", "test-text", str(path), "-o", str(out), "--no-progress", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert np.load(out).shape[0] == 3
    assert (
        "no final newline; it is row 3" in res.stderr and "wc -l counts 2" in res.stderr
    )


def test_latin1_files_get_a_hint_and_read_with_encoding(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_bytes("text\ncaf\xe9 cr\xe8me\nna\xefve\n".encode("latin-1"))
    txt_path = tmp_path / "t.txt"
    txt_path.write_bytes("caf\xe9\n".encode("latin-1"))
    for k, inputs in enumerate(([str(csv_path), "--column", "text"], [str(txt_path)])):
        out = tmp_path / f"o{k}.npy"
        res = run("embed", "test-text", *inputs, "-o", str(out), cwd=tmp_path)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
        assert "--encoding latin-1" in res.stderr and "byte" in res.stderr
        res = run(
            "embed",
            "test-text",
            *inputs,
            "-o",
            str(out),
            "--encoding",
            "latin-1",
            "--force",
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n")), max_size=8))
def test_split_lines_round_trips_any_text_without_newlines(lines):
    from sktransfer._cli_embed import split_lines

    lines = [line.rstrip("\r") for line in lines]  # a final \r belongs to \r\n
    text = "".join(line + "\n" for line in lines)
    assert split_lines(text) == lines
    assert split_lines(text.replace("\n", "\r\n")) == lines


def _table(tmp_path, ids, name="t.csv"):
    texts = [f"text {i}" for i in range(len(ids))]
    df = pd.DataFrame({"text": texts, "id": ids})
    path = tmp_path / name
    if name.endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("ids", "name", "match"),
    [
        ([1, 2, None, 4], "t.csv", r"the column 'id': ids has no value at rows \[2\]"),
        (
            ["a", "b", "a", "c"],
            "t.csv",
            r"1 id\(s\) repeat: 'a' at rows \[0, 2\]\. .*--allow-duplicate-ids",
        ),
    ],
    ids=[
        "empty cell",
        "duplicates",
    ],  # mixed types: test_transform_to_file_checks_ids_first
)
def test_bad_id_columns_fail_up_front_in_one_line(tmp_path, ids, name, match):
    table = _table(tmp_path, pd.Series(ids, dtype=object), name)
    out = tmp_path / "o.parquet"
    res = run(
        "embed",
        "test-text",
        str(table),
        "--column",
        "text",
        "--id-column",
        "id",
        "-o",
        str(out),
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert re.search(match, res.stderr), res.stderr
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_integer_ids_keep_their_type_and_duplicates_can_be_allowed(tmp_path):
    out = tmp_path / "o.parquet"
    table = _table(tmp_path, [10, 20, 30])
    res = run(
        "embed",
        "test-text",
        str(table),
        "--column",
        "text",
        "--id-column",
        "id",
        "-o",
        str(out),
        "--no-progress",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    got = pd.read_parquet(out)["id"]
    assert got.tolist() == [10, 20, 30] and got.dtype == np.int64  # not "10.0"
    table = _table(tmp_path, ["a", "a", "b"], "d.csv")
    res = run(
        "embed",
        "test-text",
        str(table),
        "--column",
        "text",
        "--id-column",
        "id",
        "-o",
        str(tmp_path / "d.parquet"),
        "--allow-duplicate-ids",
        "--no-progress",
        cwd=tmp_path,
    )
    assert res.returncode == 0 and "repeat" in res.stderr, res.stderr
    assert pd.read_parquet(tmp_path / "d.parquet")["id"].tolist() == ["a", "a", "b"]


def test_an_output_path_that_is_a_folder_fails_before_embedding(tmp_path):
    (tmp_path / "out.npy").mkdir()
    texts = tmp_path / "t.txt"
    texts.write_text("a\nb\n")
    res = run(
        "embed",
        "test-text",
        str(texts),
        "-o",
        str(tmp_path / "out.npy"),
        "--force",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "is a folder" in res.stderr
    ext = PretrainedFeatureExtractor("test-text").fit(["a"])
    with pytest.raises(IsADirectoryError, match="is a folder"):
        ext.transform_to_file(["a"], tmp_path / "out.npy", overwrite=True)


def test_transform_to_file_checks_ids_first(tmp_path):
    ext = PretrainedFeatureExtractor("test-text").fit(["a"])
    out = tmp_path / "o.parquet"
    with pytest.raises(ValueError, match="all int, all float or all str"):
        ext.transform_to_file(["a", "b"], out, ids=[1, "x"])
    with pytest.raises(ValueError, match="allow_duplicate_ids=True"):
        ext.transform_to_file(["a", "b"], out, ids=["x", "x"])
    with pytest.warns(UserWarning, match="repeat"):
        ext.transform_to_file(["a", "b"], out, ids=["x", "x"], allow_duplicate_ids=True)
    assert pd.read_parquet(out)["id"].tolist() == ["x", "x"]


@pytest.fixture
def linked_tree(tmp_path, rng):
    """imgs/ with a real image, a link to an image inside, a link to an image
    outside, a link to a folder outside, a dangling link and a cycle."""
    imgs, outside = tmp_path / "imgs", tmp_path / "elsewhere"
    (imgs / "sub").mkdir(parents=True)
    (outside / "deep").mkdir(parents=True)
    for path in (
        imgs / "a.png",
        imgs / "sub" / "b.png",
        outside / "c.png",
        outside / "deep" / "d.png",
    ):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), np.uint8)).save(path)
    (imgs / "inside.png").symlink_to(imgs / "sub" / "b.png")
    (imgs / "outside.png").symlink_to(outside / "c.png")
    (imgs / "outdir").symlink_to(outside / "deep", target_is_directory=True)
    (imgs / "dangling.png").symlink_to(tmp_path / "missing.png")
    (imgs / "sub" / "loop").symlink_to(imgs, target_is_directory=True)
    return imgs


@pytest.mark.parametrize(
    ("links", "names", "skipped"),
    [
        (
            "inside",
            ["a.png", "inside.png", "b.png"],
            {"outside.png", "outdir", "dangling.png", "loop"},
        ),
        (
            "all",
            ["a.png", "inside.png", "d.png", "outside.png", "b.png"],
            {"dangling.png", "loop"},
        ),
        (
            "none",
            ["a.png", "b.png"],
            {"inside.png", "outside.png", "outdir", "dangling.png", "loop"},
        ),
    ],
)
def test_links_in_folders_follow_the_policy_and_are_reported(
    linked_tree, links, names, skipped
):
    from sktransfer._cli_embed import walk_images

    files, left_out = walk_images(linked_tree, (".png",), links)
    assert [os.path.basename(f) for f in files] == names
    assert {os.path.basename(p) for p, _ in left_out} == skipped


def test_the_command_says_which_links_it_skipped(linked_tree, tmp_path):
    out = tmp_path / "o.npy"
    res = run(
        "embed",
        "test-cnn",
        str(linked_tree),
        "-o",
        str(out),
        "--no-progress",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert np.load(out).shape[0] == 3
    assert "skipped 4 link(s)" in res.stderr and "outside the folder" in res.stderr


def test_a_link_to_a_sibling_folder_is_not_walked_twice(tmp_path, rng):
    from sktransfer._cli_embed import walk_images

    imgs = tmp_path / "imgs"
    (imgs / "real").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), np.uint8)).save(
        imgs / "real" / "x.png"
    )
    (imgs / "again").symlink_to(imgs / "real", target_is_directory=True)
    files, skipped = walk_images(imgs, (".png",), "all")
    assert [os.path.relpath(f, imgs) for f in files] == ["real/x.png"]
    assert [(os.path.basename(p), why) for p, why in skipped] == [
        ("again", "a link to a folder inside it")
    ]
