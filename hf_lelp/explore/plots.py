"""The explorer's figures (PNG): a 2-D PCA scatter of P·h per class, and each class's pseudo-subclass shares."""

from __future__ import annotations

import numpy as np

from hf_lelp.base.io_utils import write_atomic
from hf_lelp.explore.stats import ClassStats


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA coordinates of `points` (SVD of the centred points) and the variance fraction of each axis."""
    centred = np.asarray(points, dtype=np.float64)
    centred = centred - centred.mean(axis=0) if len(centred) else centred
    coords = np.zeros((len(centred), 2))
    ratios = np.zeros(2)
    if len(centred) < 2:
        return coords, ratios
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    coords[:, :k] = centred @ vt[:k].T
    total = float((singular**2).sum())
    if total > 0:
        ratios[:k] = singular[:k] ** 2 / total
    return coords, ratios


def plain_text(name: str) -> str:
    """A label shown as typed: matplotlib reads `$...$` as mathtext (and stops on invalid math) unless escaped."""
    return str(name).replace("$", r"\$")


def _colours(n: int):
    from matplotlib import colormaps

    palette = colormaps["tab10" if n <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(n)]


def _new_figure(width: float, height: float):
    # Figure + Agg canvas directly: no pyplot, so no global backend state and no GUI, in any process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _scatter_panel(axes, coords, codes, names, title, ratios) -> None:
    colours = _colours(len(names))
    for k, name in enumerate(names):
        chosen = codes == k
        if chosen.any():
            label = plain_text(name)
            axes.scatter(coords[chosen, 0], coords[chosen, 1], s=6, alpha=0.6, color=colours[k], label=label)
    axes.set_title(plain_text(title), fontsize=10)
    axes.set_xlabel(f"PC1 ({ratios[0]:.0%} of sampled variance)", fontsize=8)
    axes.set_ylabel(f"PC2 ({ratios[1]:.0%})", fontsize=8)
    axes.tick_params(labelsize=7)
    if names:
        axes.legend(fontsize=7, markerscale=2, loc="best", ncol=1 + len(names) // 12)


def save_scatter(path: str, stats: ClassStats, class_name: str, fine_codes, fine_names: list[str] | None) -> None:
    coords, ratios = pca_2d(stats.sample_points)
    two_panels = fine_names is not None
    figure = _new_figure(10 if two_panels else 5.5, 4.2)
    axes = figure.subplots(1, 2 if two_panels else 1, squeeze=False)[0]
    subclass_names = [f"s{s}" for s in range(stats.num_subclasses)]
    _scatter_panel(axes[0], coords, stats.sample_assign, subclass_names, f"{class_name}: pseudo-subclass", ratios)
    if two_panels:
        # Only the fine labels present in this class get colours (so a class's 4 labels get 4 distinct ones).
        present, codes = np.unique(np.asarray(fine_codes), return_inverse=True)
        present_names = [fine_names[k] if 0 <= k < len(fine_names) else "none" for k in present]
        shown = present_names[:20]  # more colours are unreadable; the rest are drawn grey
        other = codes >= len(shown)
        axes[1].scatter(coords[other, 0], coords[other, 1], s=6, alpha=0.4, color="0.7")
        _scatter_panel(axes[1], coords, codes, shown, f"{class_name}: fine label", ratios)
    figure.suptitle(f"P·h of {len(coords)} sampled examples, 2-D PCA", fontsize=9)
    figure.tight_layout()
    write_atomic(path, lambda p: figure.savefig(p, format="png"))


def save_shares(path: str, stats: list[ClassStats], class_names: list[str]) -> None:
    """Stacked bars: each class's split into pseudo-subclasses by hard assignment."""
    figure = _new_figure(7, 0.6 + 0.35 * len(class_names))
    axes = figure.subplots()
    s = stats[0].num_subclasses
    colours = _colours(s)
    left = np.zeros(len(stats))
    rows = np.arange(len(class_names))  # positions, not categories: two names may look alike once escaped
    for k in range(s):
        shares = np.array([st.assigned[k] / st.count if st.count else 0.0 for st in stats])
        axes.barh(rows, shares, left=left, color=colours[k], label=f"s{k}")
        left += shares
    axes.set_yticks(rows, [plain_text(name) for name in class_names])
    axes.set_xlim(0, 1)
    axes.invert_yaxis()
    axes.set_xlabel("share of the class's examples (hard assignment)", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7, ncol=min(s, 8), loc="lower right")
    figure.tight_layout()
    write_atomic(path, lambda p: figure.savefig(p, format="png"))
