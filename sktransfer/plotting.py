"""Plots: learning curves of a fitted fine-tuner; a backbone ranking.

Follows scikit-learn's *Display* pattern (``LearningCurveDisplay``,
``RocCurveDisplay``): :meth:`LearningCurvesDisplay.from_estimator` reads the
skorch history of a fitted :class:`~sktransfer.FineTunedClassifier` /
:class:`~sktransfer.FineTunedRegressor` and draws it; the display keeps the
numbers (``epochs``, ``losses``, ``scores``) and the matplotlib objects.
matplotlib is imported only when drawing (``pip install sktransfer[plot]``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DomainShiftDisplay", "LearningCurvesDisplay", "RankingDisplay"]

_LOSSES = ("train_loss", "valid_loss")


class LearningCurvesDisplay:
    """Train / validation loss and validation scores per epoch.

    Parameters
    ----------
    epochs : ndarray of shape (n_epochs,)
    losses : dict of str to ndarray
        ``"train_loss"`` and, with a validation split, ``"valid_loss"``.
    scores : dict of str to ndarray
        Every ``valid_*`` score recorded each epoch (``valid_acc``,
        ``valid_f1_macro``...); NaN where an epoch has none.
    best_epoch : int or None
        The epoch whose weights were kept (the fine-tuners' ``best_epoch_``, or
        early stopping's best), if any.

    Attributes
    ----------
    figure_ : matplotlib Figure
    axes_ : ndarray of matplotlib Axes
        The loss panel, then the score panel when there are scores.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sktransfer import FineTunedClassifier
    >>> from sktransfer.plotting import LearningCurvesDisplay
    >>> X = np.random.default_rng(0).integers(0, 255, (16, 32, 32, 3), np.uint8)
    >>> clf = FineTunedClassifier("test-cnn", strategy="full", max_epochs=3,
    ...                           valid_size=0.25, random_state=0)
    >>> clf = clf.fit(X, [0, 1] * 8)
    >>> display = LearningCurvesDisplay.from_estimator(clf)
    >>> display.epochs.tolist(), sorted(display.losses)
    ([0, 1, 2, 3], ['train_loss', 'valid_loss'])
    >>> len(display.axes_)
    2
    """

    def __init__(self, epochs, losses, scores, best_epoch=None):
        self.epochs = np.asarray(epochs)
        self.losses = dict(losses)
        self.scores = dict(scores)
        self.best_epoch = best_epoch

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, title=None):
        """Read the estimator's training history and plot it.

        A fine-tuner's ``start_scores_`` (LP-FT's start) are drawn as epoch 0.
        After a refit on every row (``refit=True``) the curves
        are those of the run with validation that chose the number of epochs
        (``validation_history_``); the refit itself has no validation score.

        Parameters
        ----------
        estimator : fitted FineTunedClassifier or FineTunedRegressor
            Or any fitted skorch net.
        ax : matplotlib Axes or sequence of two Axes, default=None
            Where to draw; None makes a new figure (one or two panels).
        title : str, default=None

        Returns
        -------
        LearningCurvesDisplay
        """
        history = getattr(estimator, "validation_history_", None)
        if history is None:  # no refit: the validated run is history_
            history = getattr(estimator, "history_", None)
        if history is None or len(history) == 0:
            raise ValueError(
                f"{type(estimator).__name__} has no training history: fit it first."
            )
        rows = [dict(row) for row in history]
        start = getattr(estimator, "start_scores_", None)
        if start:  # LP-FT's start (the probe's head), scored before epoch 1
            rows.insert(0, {"epoch": 0, **start})
        epochs = np.array([row["epoch"] for row in rows])
        keys = set().union(*(row.keys() for row in rows))

        def column(key):
            return np.array([row.get(key, np.nan) for row in rows], dtype=float)

        losses = {k: column(k) for k in _LOSSES if k in keys}
        scores = {
            k: column(k)
            for k in sorted(keys)
            if k.startswith("valid_")
            and k not in _LOSSES
            and not k.endswith(("_best", "_count"))  # skorch's bookkeeping
            and np.isfinite(column(k)).any()
        }
        best = getattr(estimator, "best_epoch_", None)  # the weights kept
        stopper = dict(getattr(estimator, "callbacks_", [])).get("early_stopping")
        if best is None and stopper is not None and stopper.monitor in keys:
            values = column(stopper.monitor)
            if np.isfinite(values).any():
                pick = np.nanargmin if stopper.lower_is_better else np.nanargmax
                best = int(epochs[pick(values)])
        display = cls(epochs, losses, scores, best)
        return display.plot(ax=ax, title=title)

    def plot(self, ax=None, *, title=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes or sequence of Axes, default=None
        title : str, default=None

        Returns
        -------
        self
        """
        import matplotlib.pyplot as plt

        n_panels = 2 if self.scores else 1
        if ax is None:  # constrained layout keeps labels and legends on the canvas
            fig, axes = plt.subplots(
                1, n_panels, figsize=(5 * n_panels, 3.6), layout="constrained"
            )
            axes = np.atleast_1d(axes)
        else:
            axes = np.atleast_1d(ax)
            if len(axes) < n_panels:
                raise ValueError(
                    f"Need {n_panels} axes (losses, scores); got {len(axes)}."
                )
            fig = axes[0].figure
        for name, values in self.losses.items():
            axes[0].plot(self.epochs, values, marker="o", label=name)
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("loss")
        if n_panels == 2:
            for name, values in self.scores.items():
                axes[1].plot(self.epochs, values, marker="o", label=name)
            axes[1].set_xlabel("epoch")
            axes[1].set_ylabel("validation score")
        from matplotlib.ticker import MaxNLocator

        for a in axes[:n_panels]:
            a.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
            if self.best_epoch is not None:
                a.axvline(self.best_epoch, color="grey", ls="--", lw=1)
            a.grid(alpha=0.3)
            a.legend()
        if title:
            fig.suptitle(title)
        self.figure_, self.axes_ = fig, axes[:n_panels]
        return self


_VERDICT_COLOURS = {
    "helps": "tab:green",
    "uncertain": "tab:orange",
    "does not help": "tab:red",
}


class RankingDisplay:
    """Probe scores of ranked backbones, with the baseline as a line.

    Parameters
    ----------
    names : list of str
    scores, stds : ndarray
        Mean and standard deviation of each candidate's probe over the folds.
    verdicts : list of str
        ``"helps"``, ``"uncertain"`` or ``"does not help"`` (bar colours).
    baseline : float or None
        The baseline's mean score (a dashed line).
    scoring : str

    Attributes
    ----------
    figure_, ax_ : matplotlib Figure and Axes

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> disp = RankingDisplay(["a", "b"], np.array([0.9, 0.7]), np.array([0.02, 0.05]),
    ...                       ["helps", "does not help"], 0.8, "accuracy").plot()
    >>> [t.get_text() for t in disp.ax_.get_yticklabels()]
    ['a', 'b']
    """

    def __init__(self, names, scores, stds, verdicts, baseline, scoring):
        self.names = list(names)
        self.scores = np.asarray(scores, dtype=float)
        self.stds = np.asarray(stds, dtype=float)
        self.verdicts = list(verdicts)
        self.baseline = baseline
        self.scoring = scoring

    @classmethod
    def from_ranking(cls, ranking, ax=None):
        """Draw a :class:`~sktransfer.selection.BackboneRanking`."""
        table = ranking.table
        rows = table[table.verdict != "baseline"]
        base = table[table.verdict == "baseline"].probe_score
        return cls(
            rows.candidate,
            rows.probe_score,
            rows.probe_std,
            rows.verdict,
            float(base.iloc[0]) if len(base) else None,
            ranking.scoring,
        ).plot(ax=ax)

    def plot(self, ax=None):
        """Draw horizontal bars (best on top) with the folds' spread.

        The bar colours are the verdicts; the legend (verdicts and the
        baseline's dashed line) stands to the right of the bars, never over
        them. A new figure uses constrained layout, so long candidate names
        stay on the canvas.
        """
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        if ax is None:
            _, ax = plt.subplots(
                figsize=(8, 1.2 + 0.45 * len(self.names)), layout="constrained"
            )
        pos = np.arange(len(self.names))[::-1]
        colours = [_VERDICT_COLOURS.get(v, "tab:blue") for v in self.verdicts]
        ax.barh(pos, self.scores, xerr=self.stds, color=colours, alpha=0.8)
        ax.set_yticks(pos, self.names)
        handles = [
            Patch(color=colour, alpha=0.8, label=verdict)
            for verdict, colour in _VERDICT_COLOURS.items()
            if verdict in self.verdicts
        ]
        if self.baseline is not None:
            ax.axvline(self.baseline, color="black", ls="--")
            handles.append(
                Line2D(
                    [],
                    [],
                    color="black",
                    ls="--",
                    label=f"baseline {self.baseline:.3f}",
                )
            )
        ax.legend(
            handles=handles,
            title="verdict",
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
        )
        low = np.nanmin(np.r_[self.scores - self.stds, self.baseline or np.inf])
        ax.set_xlim(max(0.0, low - 0.05), None)
        ax.set_xlabel(f"cross-validated probe {self.scoring}")
        ax.set_ylabel("candidate")
        self.ax_, self.figure_ = ax, ax.figure
        return self


class DomainShiftDisplay:
    """A domain-shift report drawn: the domain classifier's scores and the
    distances of target samples to the source.

    Parameters
    ----------
    report : DomainShiftReport
        What :func:`sktransfer.domain_shift` returned.

    Attributes
    ----------
    figure_ : matplotlib Figure
    axes_ : ndarray of matplotlib Axes
        The domain-score histogram, then the distance histogram.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sktransfer import domain_shift
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> display = domain_shift(X[:100], X[100:] + 2).plot()
    >>> len(display.axes_)
    2
    """

    def __init__(self, report):
        self.report = report

    @classmethod
    def from_report(cls, report, ax=None):
        """Build the display and draw it (``ax``: two Axes, or None)."""
        return cls(report).plot(ax=ax)

    def plot(self, ax=None):
        """Draw on two Axes (new ones when ``ax`` is None); returns ``self``."""
        import matplotlib.pyplot as plt

        r = self.report
        if ax is None:
            _, ax = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
        ax = np.asarray(ax).ravel()
        scores = r.domain_scores
        bins = np.linspace(0, 1, 26)
        ax[0].hist(scores[: r.n_source], bins=bins, alpha=0.6, label="source")
        ax[0].hist(scores[r.n_source :], bins=bins, alpha=0.6, label="target")
        low, high = r.auc_interval
        ax[0].set(
            xlabel="domain classifier: P(target)",
            ylabel="samples",
            title=f"ROC AUC {r.auc:.2f} ({low:.2f}-{high:.2f})",
        )
        ax[0].legend()
        top = max(r.source_distances.max(), r.target_distances.max())
        dbins = np.linspace(0, top, 31)
        ax[1].hist(r.source_distances, bins=dbins, alpha=0.6, label="source")
        ax[1].hist(r.target_distances, bins=dbins, alpha=0.6, label="target")
        ax[1].axvline(r.far_threshold, color="k", ls="--", lw=1)
        ax[1].set(
            xlabel="distance to the nearest source class",
            title=f"{r.far_fraction:.0%} of target far from the source",
        )
        ax[1].legend()
        self.figure_, self.axes_ = ax[0].figure, ax
        ax[0].figure.suptitle(r.verdict)
        return self
