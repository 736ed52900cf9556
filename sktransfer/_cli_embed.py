"""``sktransfer embed``: folders, files and table columns to ``.npy`` or Parquet.

- Inputs: image files, directories (walked recursively, filtered by extension),
  text files (one text a line, for text backbones), or a column of a CSV /
  Parquet table (``--column``; relative image paths are relative to the table).
- Output: ``.npy`` (the matrix, rows in input order) or ``.parquet`` (one row
  per input: its id and its vector). Written in chunks under a temporary name
  and renamed at the end, so an output file is always whole; an existing output
  is never replaced without ``--force``.
- ``--on-error raise|nan|skip``: stop at the first bad input, or keep going
  (NaN rows, or no rows) and write the failures beside the output.
- ``--cache DIR``: a disk cache written batch by batch, so an interrupted run
  resumes where it stopped.
- Text files: one text per line, lines ended by a newline only (as wc -l
  counts them; a Windows \\r\\n ends a line too; a last line without a
  newline is a row too, and the command says so); ``--encoding`` for files and
  CSV tables that are not UTF-8.
- Every user error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from sktransfer._ids import check_ids, duplicate_ids

__all__ = ["IMAGE_EXTENSIONS", "UserError", "add_embed_parser", "run_embed"]

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)
CHUNK = 2048  # rows embedded, then written, at a time (transform_to_file)


class UserError(Exception):
    """A mistake in the command's arguments or inputs: one line, exit code 2."""


def _batch_size(text: str):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or 'auto', got {text!r}"
        )
    return value


def plain_text(doc: str) -> str:
    """A docstring as ``--help`` shows it: no reST markup (````x```` is x).

    Examples
    --------
    >>> plain_text("``sktransfer embed``: files to ``.npy``")
    'sktransfer embed: files to .npy'
    """
    return doc.replace("``", "").strip()


def add_embed_parser(sub) -> None:
    """Add the ``embed`` sub-command to ``sub`` (argparse sub-parsers)."""
    emb = sub.add_parser(
        "embed",
        help="embed image files, folders, text files or a table column",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    emb.add_argument("backbone", help="e.g. efficientnet_lite0, all-MiniLM-L6-v2")
    emb.add_argument(
        "inputs",
        nargs="+",
        help="image files or folders; text files (one text a line); or one "
        "CSV / Parquet table with --column",
    )
    emb.add_argument(
        "-o", "--output", required=True, help="output file: .npy or .parquet"
    )
    emb.add_argument("--column", help="the table column holding paths or texts")
    emb.add_argument("--id-column", help="the table column to use as row ids")
    emb.add_argument(
        "--ext",
        default=",".join(IMAGE_EXTENSIONS),
        help="extensions of the images taken from folders (default: %(default)s)",
    )
    emb.add_argument(
        "--on-error",
        choices=("raise", "nan", "skip"),
        default="raise",
        help="a bad input stops the run (raise), gives a NaN row (nan), or is left "
        "out (skip); failures are written to OUTPUT.failures.csv",
    )
    emb.add_argument("--force", action="store_true", help="replace existing output")
    emb.add_argument("--cache", help="disk cache folder: reruns resume from it")
    emb.add_argument("--batch-size", type=_batch_size, default="auto")
    emb.add_argument("--device", default="auto")
    emb.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16")
    )
    emb.add_argument("--layer", help="a block name, or an index")
    emb.add_argument("--pooling", default="auto")
    emb.add_argument("--no-progress", action="store_true", help="no progress bar")
    emb.add_argument(
        "--links",
        choices=("inside", "all", "none"),
        default="inside",
        help="symbolic links in folders: follow those that stay inside the folder "
        "(default), all, or none; the ones skipped are listed",
    )
    emb.add_argument(
        "--allow-duplicate-ids",
        action="store_true",
        help="keep repeated ids (a warning) instead of stopping",
    )
    emb.add_argument(
        "--encoding",
        default="utf-8",
        help="encoding of text files and CSV tables (default: utf-8; e.g. latin-1)",
    )
    emb.add_argument(
        "--text",
        action="store_true",
        help="(kept for compatibility: text backbones read text files anyway)",
    )


# ---------------------------------------------------------------- inputs
def split_lines(text: str) -> list[str]:
    """The rows of a text file: one per line, as ``wc -l`` counts lines.

    Only ``"\\n"`` ends a line (``str.splitlines`` also breaks on ``\\x0b``,
    ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and U+2029, which
    would shift every row after them against the file and a labels file beside
    it). A ``"\\r"`` before the ``"\\n"`` (Windows line ends) is not part of the
    text. A last line without a final newline is a row too (``wc -l`` does not
    count it; the command says so).

    Examples
    --------
    >>> split_lines("a\\r\\nb\\u2028c\\n\\nd")
    ['a', 'b\\u2028c', '', 'd']
    >>> split_lines("")
    []
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _decode_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> UserError:
    return UserError(
        f"cannot read {path} as {encoding} text ({exc.reason} at byte "
        f"{exc.start}: {exc.object[exc.start : exc.start + 1]!r}); pass its "
        "encoding, e.g. --encoding latin-1 (or cp1252)"
    )


def _read_table(path: Path, column: str, id_column: str | None, encoding: str):
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas ships with the extras
        raise UserError("reading a table needs pandas: pip install pandas") from exc
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, encoding=encoding)
    except ImportError as exc:
        raise UserError(f"reading {path} needs pyarrow: pip install pyarrow") from exc
    except UnicodeDecodeError as exc:
        raise _decode_error(path, encoding, exc) from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the table {path}: {exc}") from exc
    for name in (column, id_column):
        if name is not None and name not in table.columns:
            raise UserError(
                f"{path} has no column {name!r}; its columns are "
                f"{list(table.columns)[:20]}"
            )
    values = table[column].tolist()
    ids = table[id_column].tolist() if id_column else None  # typed: checked later
    return values, ids


def _collect(args, modality: str) -> tuple[list, list[str]]:
    """The samples to embed and their ids, in a stable order."""
    paths = [Path(p) for p in args.inputs]
    if args.column is not None:
        if len(paths) != 1 or paths[0].suffix.lower() not in (".csv", ".parquet"):
            raise UserError("--column needs exactly one .csv or .parquet table")
        table = paths[0]
        if not table.is_file():
            raise UserError(f"the table {table} does not exist")
        values, ids = _read_table(table, args.column, args.id_column, args.encoding)
        if modality == "image":  # relative paths are relative to the table
            values = [
                str(table.parent / v) if isinstance(v, str) and v else v for v in values
            ]
        return values, ids or [str(i) for i in range(len(values))]
    if args.id_column:
        raise UserError("--id-column needs --column")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing[:5])}")
    if modality == "text":
        texts, ids = [], []
        for p in paths:
            if p.is_dir():
                raise UserError(f"{p} is a folder; a text backbone reads text files")
            try:
                raw = p.read_bytes().decode(args.encoding)
            except UnicodeDecodeError as exc:
                raise _decode_error(p, args.encoding, exc) from exc
            except OSError as exc:
                raise UserError(f"cannot read {p}: {exc}") from exc
            lines = split_lines(raw)
            if raw and not raw.endswith("\n"):
                print(
                    f"note: the last line of {p} has no final newline; it is row "
                    f"{len(lines)} of that file (wc -l counts {len(lines) - 1})",
                    file=sys.stderr,
                )
            texts += lines
            ids += [f"{p}:{i + 1}" for i in range(len(lines))]
        return texts, ids
    extensions = tuple(e.strip().lower() for e in args.ext.split(",") if e.strip())
    files: list[str] = []
    for p in paths:
        if p.is_dir():
            found, skipped = walk_images(p, extensions, args.links)
            if skipped:
                shown = "; ".join(f"{path} ({why})" for path, why in skipped[:5])
                more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
                print(
                    f"note: skipped {len(skipped)} link(s) in {p}: {shown}{more} "
                    "(--links all follows every link)",
                    file=sys.stderr,
                )
            if not found:
                raise UserError(f"the folder {p} has no {'/'.join(extensions)} files")
            files += found
        else:
            files.append(str(p))
    return files, list(files)


def walk_images(
    folder: Path, extensions: tuple[str, ...], links: str = "inside"
) -> tuple[list[str], list[tuple[str, str]]]:
    """The image files under ``folder`` (sorted) and the links skipped, why.

    ``links="inside"`` (the default) follows a link, to a file or a folder,
    whose target lies inside ``folder``, and skips one that leads out of it
    (so a folder handed to the command never reads files elsewhere);
    ``"all"`` follows every link; ``"none"`` follows none. Dangling links and
    link cycles are skipped whatever the policy. Every skipped link is
    returned, so the command can say what it left out.
    """
    root = folder.resolve()
    files: list[str] = []
    skipped: list[tuple[str, str]] = []
    visited: set[Path] = set()

    def visit(directory: Path) -> None:
        real = directory.resolve()
        if real in visited:
            skipped.append((str(directory), "a link cycle"))
            return
        visited.add(real)
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.is_symlink():
                target = path.resolve()
                if not target.exists():
                    skipped.append((str(path), "a dangling link"))
                    continue
                if links == "none":
                    skipped.append((str(path), "a link"))
                    continue
                inside = target.is_relative_to(root)
                if links == "inside" and not inside:
                    skipped.append(
                        (str(path), f"a link to {target}, outside the folder")
                    )
                    continue
                if inside and target.is_dir():  # that folder is walked anyway
                    skipped.append((str(path), "a link to a folder inside it"))
                    continue
            if entry.is_dir(follow_symlinks=True):
                visit(path)
            elif path.suffix.lower() in extensions and entry.is_file(
                follow_symlinks=True
            ):
                files.append(str(path))

    visit(folder)
    return sorted(files), skipped


# ---------------------------------------------------------------- outputs
def _check_output(args) -> Path:
    out = Path(args.output)
    if out.suffix.lower() not in (".npy", ".parquet"):
        raise UserError(f"the output {out} must end with .npy or .parquet")
    if out.is_dir():
        raise UserError(f"the output {out} is a folder; pass a file name inside it")
    if not out.parent.exists():
        raise UserError(f"the output folder {out.parent} does not exist")
    taken = [p for p in (out, _failures_path(out)) if p.exists()]
    if taken and not args.force:
        raise UserError(
            f"{taken[0]} exists; not replacing it (pass --force to replace it)"
        )
    return out


def _failures_path(out: Path) -> Path:
    return out.with_name(out.name + ".failures.csv")


# ---------------------------------------------------------------- run
def run_embed(args) -> int:
    """Run ``sktransfer embed`` with parsed ``args``."""
    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.backbones import get_backbone_spec
    from sktransfer.exceptions import InputError

    out = _check_output(args)
    modality = get_backbone_spec(args.backbone).modality
    if modality == "tabular":
        raise UserError(f"{args.backbone} is a tabular backbone; embed images or text")
    values, ids = _collect(args, modality)
    if not values:
        raise UserError("there is nothing to embed (0 inputs)")
    try:
        ids = check_ids(ids, len(values))
    except ValueError as exc:
        where = f"the column {args.id_column!r}: " if args.id_column else ""
        raise UserError(f"{where}{exc}") from exc
    repeated = duplicate_ids(ids)
    if repeated and not args.allow_duplicate_ids:
        raise UserError(
            f"{repeated}. Make the ids unique, or pass --allow-duplicate-ids"
        )
    layer = args.layer
    if layer is not None and layer.lstrip("-").isdigit():
        layer = int(layer)
    ext = PretrainedFeatureExtractor(
        args.backbone,
        layer=layer,
        pooling=args.pooling,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        cache=args.cache if args.cache else "memory",
        on_error="raise" if args.on_error == "raise" else "nan",
    ).fit(values[:1])
    width = ext._n_features_out
    try:
        errors = ext.transform_to_file(
            values,
            out,
            ids=ids,
            overwrite=args.force,
            chunk_size=CHUNK,
            skip_errors=args.on_error == "skip",
            progress=not args.no_progress,
            allow_duplicate_ids=args.allow_duplicate_ids,
        )
    except InputError as exc:
        raise UserError(
            f"{exc} (pass --on-error skip or nan to embed the other inputs)"
        ) from exc
    failures = [(i, ids[i], errors[i]) for i in sorted(errors)]
    if failures:
        with open(_failures_path(out), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["index", "id", "error"])
            w.writerows(failures)
    kept = len(values) - (len(failures) if args.on_error == "skip" else 0)
    print(f"wrote {out}: {kept} rows x {width}")
    if failures:
        print(
            f"{len(failures)} input(s) could not be embedded ("
            f"{'left out' if args.on_error == 'skip' else 'NaN rows'}); see "
            f"{_failures_path(out)}",
            file=sys.stderr,
        )
    return 0
