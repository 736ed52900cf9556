"""The README's Python code blocks run, in order, as one script."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_code_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "(4, 32)" in out and "(4, 65)" in out
    packaged = "'efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2'"
    assert f"['all-MiniLM-L6-v2', {packaged}]" in out
    assert "torchvision:resnet18" in out


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    assert first_block.startswith("make demo") and "\nmake test" in first_block
    assert "make test" in (README.parent / ".ci" / "run").read_text()
