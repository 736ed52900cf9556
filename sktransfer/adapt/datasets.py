"""Shifted pairs built from data that ships in packages: same labels, another style.

Used by the domain-shift benchmark, the guide and the tests; nothing is
downloaded.

* **digits**: scikit-learn's handwritten 8x8 digits (source) against digits
  rendered from the fonts that ship with matplotlib (DejaVu, STIX, Computer
  Modern), put through the UCI procedure that made the originals: a 32x32
  bitmap, centred and scaled to the box, counted in 4x4 blocks to the same
  0-16 grid. Same ten labels, another style.
* **wordnet**: WordNet 3.0 verb synsets (Debian's ``wordnet-base``), labelled
  by their lexicographer file (15 classes: ``verb.motion``,
  ``verb.communication``...). Source: the definitions; target: the usage
  examples of *other* synsets ("he ran to the store"). Same labels, another
  register of text.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

WORDNET = Path("/usr/share/wordnet/data.verb")
VERB_FILES = {
    29: "body", 30: "change", 31: "cognition", 32: "communication",
    33: "competition", 34: "consumption", 35: "contact", 36: "creation",
    37: "emotion", 38: "motion", 39: "perception", 40: "possession",
    41: "social", 42: "stative", 43: "weather",
}  # fmt: skip
FONTS = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
    "cmr10", "cmss10", "cmtt10", "cmb10", "cmti10",
)  # fmt: skip


__all__ = ["font_digits", "handwritten_digits", "wordnet_glosses", "wordnet_verbs"]


def handwritten_digits():
    """scikit-learn's digits as ``(uint8 images (n, 8, 8), labels)``.

    Examples
    --------
    >>> X, y = handwritten_digits()
    >>> X.shape, X.dtype.name, int(X.max())
    ((1797, 8, 8), 'uint8', 255)
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    return _to_uint8(d.images), d.target


def _to_uint8(grid):
    return np.round(np.asarray(grid, dtype=np.float64) * (255 / 16)).astype(np.uint8)


def font_digits(n_per_font: int = 5, seed: int = 0):
    """Digits rendered from matplotlib's fonts, on the 8x8 0-16 grid.

    Each (font, digit) is drawn ``n_per_font`` times with a random rotation
    (±12°), stroke width and aspect, then binarised at 32x32 and block-counted
    as the UCI originals were. Returns ``(uint8 images (n, 8, 8), labels)``.

    Examples
    --------
    >>> X, y = font_digits(n_per_font=1)
    >>> X.shape, sorted(set(y.tolist())) == list(range(10))
    ((200, 8, 8), True)
    """
    import matplotlib
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for name in FONTS:
        font = ImageFont.truetype(str(folder / f"{name}.ttf"), 96)
        for digit in range(10):
            for _ in range(n_per_font):
                canvas = Image.new("L", (160, 160), 0)
                ImageDraw.Draw(canvas).text((30, 10), str(digit), fill=255, font=font)
                width = int(rng.integers(0, 3))
                if width:
                    canvas = canvas.filter(ImageFilter.MaxFilter(2 * width + 1))
                canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=2)
                box = canvas.getbbox()
                glyph = canvas.crop(box)
                w, h = glyph.size
                w = max(1, int(w * rng.uniform(0.8, 1.25)))
                scale = 32 / max(w, h)
                glyph = glyph.resize(
                    (max(1, round(w * scale)), max(1, round(h * scale))), 2
                )
                bitmap = Image.new("L", (32, 32), 0)
                bitmap.paste(
                    glyph, ((32 - glyph.size[0]) // 2, (32 - glyph.size[1]) // 2)
                )
                on = np.asarray(bitmap) > 127
                grid = on.reshape(8, 4, 8, 4).sum(axis=(1, 3))
                images.append(grid)
                labels.append(digit)
    return _to_uint8(np.stack(images)), np.asarray(labels)


def wordnet_glosses(path: Path = WORDNET):
    """``(lexicographer file number, gloss)`` of every synset of one of
    WordNet's ``data.*`` files (Debian's ``wordnet-base``), in file order."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: apt-get install wordnet-base (Debian's WordNet 3.0)."
        )
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(" ") or "|" not in line:
            continue
        yield int(line.split(" ", 3)[1]), line.split("|", 1)[1].strip()


def wordnet_verbs(path: Path = WORDNET, seed: int = 0):
    """``(definitions, labels), (examples, labels)`` from disjoint synsets.

    Synsets with usage examples are split in two at random: the definitions
    of one half and of every synset without examples are the source, the
    examples (one per synset) of the other half the target. Needs Debian's
    ``wordnet-base`` (``/usr/share/wordnet``).
    """
    rows = []
    for lexfile, gloss in wordnet_glosses(path):
        label = "verb." + VERB_FILES[lexfile]
        examples = re.findall(r'"([^"]+)"', gloss)
        definition = gloss.split(";")[0].split('"')[0].strip()
        rows.append((label, definition, examples))
    rng = np.random.default_rng(seed)
    with_examples = [i for i, r in enumerate(rows) if r[2]]
    target_ids = set(rng.permutation(with_examples)[: len(with_examples) // 2].tolist())
    Xs, ys, Xt, yt = [], [], [], []
    for i, (label, definition, examples) in enumerate(rows):
        if i in target_ids:
            Xt.append(examples[int(rng.integers(len(examples)))])
            yt.append(label)
        elif definition:
            Xs.append(definition)
            ys.append(label)
    return (Xs, np.asarray(ys, dtype=object)), (Xt, np.asarray(yt, dtype=object))
