"""Progress bars (tqdm) that draw their final state once.

``tqdm.close()`` always draws the bar's final state; when the step that
completes the bar was drawn too, a log that shows carriage returns as new lines
(CI logs, notebooks' captured stderr, ``less``) shows the last line twice.
:func:`advance` moves a bar without drawing the completing step, so ``close()``
draws it once.
"""

from __future__ import annotations

__all__ = ["advance"]


def advance(bar, n: int) -> None:
    """Advance ``bar`` by ``n``; the step that completes it is drawn by ``close()``.

    Examples
    --------
    >>> import io
    >>> from tqdm import tqdm
    >>> out = io.StringIO()
    >>> bar = tqdm(total=4, file=out, mininterval=0, miniters=1, ascii=True)
    >>> advance(bar, 2); advance(bar, 2); bar.close()
    >>> [line.split("|")[0] for line in out.getvalue().split("\\r") if line]
    ['  0%', ' 50%', '100%']
    """
    if bar.total is not None and bar.n + n >= bar.total:
        bar.n += n  # close() draws it
    else:
        bar.update(n)
