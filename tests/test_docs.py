"""The docs tell the truth: every Python block of docs/ runs; the API reference
renders its cross-references and defaults.

The blocks of one page run in order, as one script, in a fresh folder (so the
files they write land there). The scaling guide reads an ``images.csv``
(``path,label``): the test writes one with 24 real images (scikit-image's LFW
subset, saved as PNG). Blocks that use an engine which is not one of our
dependencies (Ray, Spark) are compiled here, and run by the second test where
that engine is installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
OTHER_ENGINES = ("ray", "pyspark")


def _blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _engine(block: str) -> str | None:
    for name in OTHER_ENGINES:
        if re.search(rf"^(import|from) {name}\b", block, flags=re.M):
            return name
    return None


def _write_images_csv(folder: Path) -> None:
    from PIL import Image
    from skimage.data import lfw_subset

    faces = lfw_subset()
    rows = ["path,label"]
    for i in [*range(12), *range(100, 112)]:
        path = folder / f"img{i}.png"
        Image.fromarray((faces[i] * 255).astype(np.uint8)).save(path)
        rows.append(f"{path},{int(i < 100)}")
    (folder / "images.csv").write_text("\n".join(rows) + "\n")


def _run_page(page: str, blocks: list[str], folder: Path) -> dict:
    namespace: dict = {"__name__": "__docs__"}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for i, block in enumerate(blocks):
            code = compile(block, f"docs/{page} block {i + 1}", "exec")
            exec(code, namespace)
    finally:
        os.chdir(cwd)
        client = namespace.get("client")
        if client is not None and hasattr(client, "close"):
            cluster = client.cluster
            client.close()
            cluster.close()
    return namespace


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)])
def test_docs_code_blocks_run(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    blocks = _blocks(page)
    runnable = []
    for i, block in enumerate(blocks):
        if _engine(block):  # run by the next test, where the engine exists
            compile(block, f"docs/{page} block {i + 1}", "exec")
        else:
            runnable.append(block)
    if "images.csv" in "".join(runnable):
        _write_images_csv(tmp_path)
    _run_page(page, runnable, tmp_path)


@pytest.mark.parametrize("engine", OTHER_ENGINES)
def test_docs_blocks_for_other_engines(engine, tmp_path):
    found = [(p, b) for p in PAGES for b in _blocks(p) if _engine(b) == engine]
    assert found, f"no docs block uses {engine}: drop it from OTHER_ENGINES"
    if importlib.util.find_spec(engine) is None:
        pytest.skip(f"{engine} is not installed (not a dependency of sktransfer)")
    _write_images_csv(tmp_path)
    for page, block in found:
        _run_page(page, [block], tmp_path)


def test_api_reference_renders_roles_as_links_and_whole_defaults(tmp_path):
    """mkdocs --strict fails on a cross-reference to nothing; the page must also
    show no raw Sphinx role and no cut default."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    mkdocs = Path(sys.executable).with_name("mkdocs")
    subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        env=env,
    )
    page = (tmp_path / "api" / "index.html").read_text(encoding="utf-8")
    assert not re.search(r":(func|class|meth|mod|attr|exc):", page)
    assert page.count('class="autorefs autorefs-internal"') >= 30
    defaults = re.findall(r"default:\s*<code>([^<]*)</code>", page)
    assert "&#39;efficientnet_lite0&#39;" in defaults  # whole, not cut
    assert not any(d.endswith("…") for d in defaults)


def test_block_names_takes_a_backbone_name():
    from sktransfer.backbones import block_names

    assert block_names("test-cnn") == ["blocks.0", "blocks.1", "blocks.2"]
    with pytest.raises(ValueError, match="tabular"):
        block_names("test-mlp")
