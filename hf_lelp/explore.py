"""The pseudo-subclass explorer: a static HTML report of what each class's S pseudo-subclass directions pick up.

Per class c (examples grouped as the projections were fitted: by label, or by the teacher's argmax for
grouping="prediction" and for unlabelled rows), per pseudo-subclass s:
  * share: the fraction of the class's examples whose hard assignment argmax_s z_{c,s} is s;
  * variance: the variance of the raw score v_{c,s}ᵀ P h and its fraction of the class's total variance of P h;
  * the top_k texts with the highest z_{c,s} among the class's examples.
Plus a PCA scatter of P h coloured by assignment (and by a fine label when one is given, with the adjusted mutual
information and purity of assignment vs fine label). Statistics are streamed over the cache in chunks; only the
scatter's seeded subsample (max_points per class) and a running top-k are held in memory.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .agreement import (  # noqa: F401  (re-exported: the explorer's public scores)
    adjusted_mutual_info,
    adjusted_mutual_info_from_table,
    contingency_table,
    expected_mutual_info,
    mutual_info,
    purity,
)
from .cache import TeacherCache
from .io_utils import write_atomic, write_json_atomic
from .projections import SubclassProjections

REPORT_NAME = "report.html"
SUMMARY_NAME = "summary.json"
MAX_TEXT_CHARS = 600  # longer texts are cut in the report (the full text is in the dataset)
NO_FINE_LABEL = -1

TextSource = Mapping[int, str] | Sequence[str]


# --------------------------------------------------------------------------------------------------------------
# Streaming statistics
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ClassStats:
    """Running statistics of one class, float64 so that millions of rows sum accurately."""

    num_subclasses: int
    hidden_size: int
    num_fine: int
    top_k: int
    max_points: int
    count: int = 0
    assigned: np.ndarray = field(init=False)  # [S] hard-assignment counts
    score_sum: np.ndarray = field(init=False)  # [S] sum of centred raw scores v_sᵀ(P h - μ)
    score_sq: np.ndarray = field(init=False)  # [S] sum of their squares
    resid_sum: np.ndarray = field(init=False)  # [D] sum of P h - μ
    resid_sq: float = 0.0  # sum of |P h - μ|²
    fine_table: np.ndarray = field(init=False)  # [S, K] assignment × fine label counts
    top_scores: list[np.ndarray] = field(init=False)  # per s, the running top-k z (descending)
    top_ids: list[np.ndarray] = field(init=False)
    sample_keys: np.ndarray = field(init=False)  # scatter sample: random keys, P h, assignment, ids
    sample_points: np.ndarray = field(init=False)
    sample_assign: np.ndarray = field(init=False)
    sample_ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        s, d = self.num_subclasses, self.hidden_size
        self.assigned = np.zeros(s, dtype=np.int64)
        self.score_sum, self.score_sq = np.zeros(s), np.zeros(s)
        self.resid_sum = np.zeros(d)
        self.fine_table = np.zeros((s, self.num_fine), dtype=np.int64)
        self.top_scores = [np.empty(0) for _ in range(s)]
        self.top_ids = [np.empty(0, dtype=np.int64) for _ in range(s)]
        self.sample_keys = np.empty(0)
        self.sample_points = np.empty((0, d), dtype=np.float32)
        self.sample_assign = np.empty(0, dtype=np.int64)
        self.sample_ids = np.empty(0, dtype=np.int64)

    def update(self, ids, projected, centred_scores, z, residual, fine_codes, keys) -> None:
        """Add one chunk of this class's rows (all float64 numpy except `projected`, kept as float32)."""
        assignment = z.argmax(axis=1)
        self.count += len(ids)
        self.assigned += np.bincount(assignment, minlength=self.num_subclasses)
        self.score_sum += centred_scores.sum(axis=0)
        self.score_sq += (centred_scores**2).sum(axis=0)
        self.resid_sum += residual.sum(axis=0)
        self.resid_sq += float((residual**2).sum())
        known = fine_codes != NO_FINE_LABEL
        np.add.at(self.fine_table, (assignment[known], fine_codes[known]), 1)
        for s in range(self.num_subclasses):
            self._update_top(s, z[:, s], ids)
        self._update_sample(keys, projected, assignment, ids)

    def _update_top(self, s: int, scores: np.ndarray, ids: np.ndarray) -> None:
        all_scores = np.concatenate([self.top_scores[s], scores])
        all_ids = np.concatenate([self.top_ids[s], ids])
        order = np.lexsort((all_ids, -all_scores))[: self.top_k]  # highest score first, ties by id
        self.top_scores[s], self.top_ids[s] = all_scores[order], all_ids[order]

    def _update_sample(self, keys, projected, assignment, ids) -> None:
        # Bottom-k of uniform random keys: a uniform sample without replacement, whatever the chunking.
        keys = np.concatenate([self.sample_keys, keys])
        keep = np.argsort(keys, kind="stable")[: self.max_points]
        self.sample_keys = keys[keep]
        self.sample_points = np.concatenate([self.sample_points, projected])[keep]
        self.sample_assign = np.concatenate([self.sample_assign, assignment])[keep]
        self.sample_ids = np.concatenate([self.sample_ids, ids])[keep]

    def total_variance(self) -> float:
        if not self.count:
            return float("nan")
        mean = self.resid_sum / self.count
        return max(self.resid_sq / self.count - float(mean @ mean), 0.0)

    def score_variances(self) -> np.ndarray:
        if not self.count:
            return np.full(self.num_subclasses, np.nan)
        mean = self.score_sum / self.count
        return np.maximum(self.score_sq / self.count - mean**2, 0.0)


def _groups(projections: SubclassProjections, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The class each row belongs to, as in the fit; unlabelled rows take the teacher's prediction."""
    predicted = logits.argmax(dim=1)
    if projections.options.grouping == "prediction":
        return predicted
    return torch.where(labels >= 0, labels, predicted)


def _ids_missing(source: TextSource, example_ids: np.ndarray) -> np.ndarray:
    if isinstance(source, Mapping):
        keys = np.fromiter((int(k) for k in source.keys()), dtype=np.int64, count=len(source))
        return example_ids[~np.isin(example_ids, keys)]
    return example_ids[(example_ids < 0) | (example_ids >= len(source))]


def check_covers(source: TextSource, example_ids: np.ndarray, what: str) -> None:
    """Refuse texts (or fine labels) that do not cover every cached example id: they come from other data."""
    missing = _ids_missing(source, np.asarray(example_ids, dtype=np.int64))
    if len(missing):
        raise ValueError(
            f"{what} are missing for {len(missing)} of the {len(example_ids)} cached example ids (first: "
            f"{missing[:10].tolist()}): the dataset or its caps (--max_train_examples, --subset_seed) differ from "
            "the ones the teacher cache was built with."
        )


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == ""


def encode_fine_labels(fine_labels: TextSource, example_ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer codes aligned with the cache rows (NO_FINE_LABEL where missing) and the sorted label names."""
    values = [fine_labels[int(i)] for i in example_ids]
    names = sorted({str(v) for v in values if not _is_missing(v)})
    index = {name: k for k, name in enumerate(names)}
    codes = np.array([NO_FINE_LABEL if _is_missing(v) else index[str(v)] for v in values], dtype=np.int64)
    return codes, names


def collect_statistics(
    cache: TeacherCache,
    projections: SubclassProjections,
    fine_codes: np.ndarray | None,
    num_fine: int,
    top_k: int,
    max_points: int,
    seed: int,
    chunk_size: int,
) -> list[ClassStats]:
    """One streaming pass over the cache: per-class counts, moments, contingency, top-k and scatter sample."""
    c, s, d = cache.num_labels, projections.num_subclasses, cache.hidden_size
    stats = [ClassStats(s, d, num_fine, top_k, max_points) for _ in range(c)]
    rng = np.random.default_rng(seed)
    means = projections.means.double().numpy()
    scales = projections.scales.double().numpy()
    start = 0
    for hidden, logits, labels in cache.iter_chunks(chunk_size):
        rows = np.arange(start, start + len(hidden))
        start += len(hidden)
        ids = np.asarray(cache.example_ids[rows], dtype=np.int64)
        groups = _groups(projections, labels, logits).numpy()
        z = projections.scores(hidden).double().numpy()  # [B, C, S]
        projected = projections.project(hidden.float())
        codes = fine_codes[rows] if fine_codes is not None else np.full(len(rows), NO_FINE_LABEL)
        keys = rng.random(len(rows))
        for k in range(c):
            mine = groups == k
            if not mine.any():
                continue
            own_z = z[mine, k]
            points = projected[torch.from_numpy(mine)]
            stats[k].update(
                ids[mine],
                points.numpy(),
                own_z * scales[k],  # = v_sᵀ (P h - μ_k), the centred raw score
                own_z,
                points.double().numpy() - means[k],
                codes[mine],
                keys[mine],
            )
    return stats


# --------------------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------------------


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
            axes.scatter(coords[chosen, 0], coords[chosen, 1], s=6, alpha=0.6, color=colours[k], label=name)
    axes.set_title(title, fontsize=10)
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
    for k in range(s):
        shares = np.array([st.assigned[k] / st.count if st.count else 0.0 for st in stats])
        axes.barh(class_names, shares, left=left, color=colours[k], label=f"s{k}")
        left += shares
    axes.set_xlim(0, 1)
    axes.invert_yaxis()
    axes.set_xlabel("share of the class's examples (hard assignment)", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7, ncol=min(s, 8), loc="lower right")
    figure.tight_layout()
    write_atomic(path, lambda p: figure.savefig(p, format="png"))


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-size: 0.9em; }
th { background: #f3f3f3; }
section { border-top: 2px solid #ddd; padding-top: 0.5em; margin-top: 1.5em; }
.subclass { border-left: 4px solid #7aa6d6; padding: 0.2em 0.8em; margin: 0.8em 0; background: #fafcff; }
.top-texts li { margin: 0.3em 0; }
.score { font-family: monospace; color: #555; }
.example-id { color: #888; font-size: 0.85em; }
img { max-width: 100%; }
"""


def _fmt(value, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def _text_of(texts: TextSource, example_id: int) -> str:
    text = str(texts[int(example_id)])
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + " …"


def _rows(pairs) -> str:
    return "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs)


def _overview_html(cache: TeacherCache, projections: SubclassProjections, summary: dict) -> str:
    fingerprint, options = cache.fingerprint, projections.options
    header = [
        ("teacher", fingerprint.get("teacher")),
        ("dataset", fingerprint.get("dataset")),
        ("N (examples)", cache.num_examples),
        ("D (hidden size)", cache.hidden_size),
        ("C (classes)", cache.num_labels),
        ("cache", cache.path),
    ]
    fit = [
        ("S (pseudo-subclasses)", options.num_subclasses),
        ("grouping", options.grouping),
        ("null_space", options.null_space),
        ("rotate", options.rotate),
        ("seed", options.seed),
    ]
    overall = summary["overall"]
    class_rows = "".join(
        f'<tr><td><a href="#class-{entry["index"]}">{html.escape(entry["name"])}</a></td><td>{entry["count"]}</td>'
        f"<td>{_fmt(entry['variance'])}</td><td>{_fmt(entry['explained_fraction'], '.1%')}</td>"
        f"<td>{_fmt(entry['ami'], '.3f')}</td><td>{_fmt(entry['purity'], '.3f')}</td></tr>"
        for entry in summary["classes"]
    )
    agreement = ""
    if overall["ami"] is not None:
        agreement = (
            f'<p class="agreement">All classes together, (class, pseudo-subclass) vs fine label: AMI '
            f"{_fmt(overall['ami'], '.3f')}, purity {_fmt(overall['purity'], '.3f')} over {overall['fine_labels']} "
            "fine labels.</p>"
        )
    return (
        '<section id="overview">\n<h2>Overview</h2>\n'
        f'<table class="fingerprint"><caption>Teacher cache</caption>{_rows(header)}</table>\n'
        f'<table class="fit-options"><caption>Fit options</caption>{_rows(fit)}</table>\n'
        '<table class="classes"><caption>Classes</caption><tr><th>class</th><th>examples</th>'
        "<th>variance of P·h</th><th>carried by the S directions</th><th>AMI vs fine label</th><th>purity</th></tr>"
        f"{class_rows}</table>\n{agreement}\n"
        f'<figure><img src="{summary["shares_png"]}" alt="pseudo-subclass shares per class">'
        "<figcaption>Share of each class's examples per pseudo-subclass (argmax of its scores).</figcaption>"
        "</figure>\n</section>\n"
    )


def _subclass_html(class_index: int, sub: dict, texts: TextSource) -> str:
    items = "".join(
        f'<li><span class="score">z = {_fmt(top["score"], ".2f")}</span> '
        f'<span class="example-id">#{top["example_id"]}</span> '
        f'<span class="text">{html.escape(_text_of(texts, top["example_id"]))}</span></li>'
        for top in sub["top"]
    )
    s = sub["index"]
    return (
        f'<div class="subclass" id="class-{class_index}-subclass-{s}">\n<h3>Pseudo-subclass s{s}</h3>\n'
        f"<p>share <b>{_fmt(sub['share'], '.1%')}</b> ({sub['count']} examples); raw-score variance "
        f"{_fmt(sub['variance'])}, <b>{_fmt(sub['variance_fraction'], '.1%')}</b> of the class's variance of P·h."
        f'</p>\n<ol class="top-texts">{items}</ol>\n</div>\n'
    )


def _class_html(entry: dict, texts: TextSource) -> str:
    c = entry["index"]
    agreement = ""
    if entry["ami"] is not None:
        agreement = (
            f'<p class="agreement">Assignment vs fine label: AMI <b>{_fmt(entry["ami"], ".3f")}</b>, purity '
            f"<b>{_fmt(entry['purity'], '.3f')}</b> ({entry['fine_labels']} fine labels).</p>\n"
        )
    figure = ""
    if entry["scatter_png"]:
        figure = (
            f'<figure><img src="{entry["scatter_png"]}" alt="2-D PCA of the projected embeddings of '
            f'{html.escape(entry["name"])}"><figcaption>P·h of a seeded sample of {entry["sampled_points"]} '
            "examples, reduced to 2-D by PCA, coloured by pseudo-subclass (and by fine label).</figcaption>"
            "</figure>\n"
        )
    fitted = entry["fitted_explained_fraction"]
    return (
        f'<section class="class-section" id="class-{c}">\n<h2>Class {c}: {html.escape(entry["name"])}</h2>\n'
        f"<p>{entry['count']} examples; variance of P·h {_fmt(entry['variance'])}, of which the S directions carry "
        f"{_fmt(entry['explained_fraction'], '.1%')} (at fit time: {_fmt(fitted, '.1%')}).</p>\n"
        f"{agreement}{figure}" + "".join(_subclass_html(c, sub, texts) for sub in entry["subclasses"]) + "</section>\n"
    )


def render_html(cache: TeacherCache, projections: SubclassProjections, summary: dict, texts: TextSource) -> str:
    title = (
        f"Pseudo-subclass explorer: {cache.fingerprint.get('teacher', 'teacher')} on "
        f"{cache.fingerprint.get('dataset', 'dataset')}"
    )
    body = _overview_html(cache, projections, summary) + "".join(_class_html(e, texts) for e in summary["classes"])
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}</body>\n</html>\n"
    )


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _class_entry(k: int, name: str, st: ClassStats, projections: SubclassProjections, fine_names) -> dict:
    total = st.total_variance()
    variances = st.score_variances()
    table = st.fine_table[:, st.fine_table.sum(axis=0) > 0]
    has_fine = fine_names is not None and table.sum() > 0
    subclasses = [
        {
            "index": s,
            "count": int(st.assigned[s]),
            "share": _nan_to_none(st.assigned[s] / st.count if st.count else float("nan")),
            "variance": _nan_to_none(float(variances[s])),
            "variance_fraction": _nan_to_none(float(variances[s]) / total if total > 0 else float("nan")),
            "top": [{"example_id": int(i), "score": float(z)} for z, i in zip(st.top_scores[s], st.top_ids[s])],
        }
        for s in range(st.num_subclasses)
    ]
    fractions = [sub["variance_fraction"] for sub in subclasses]
    return {
        "index": k,
        "name": name,
        "count": st.count,
        "variance": _nan_to_none(total),
        "explained_fraction": None if None in fractions else float(sum(fractions)),
        "fitted_explained_fraction": projections.info.get("explained_variance_ratio", {}).get(name),
        "ami": adjusted_mutual_info_from_table(table) if has_fine else None,
        "purity": purity(table) if has_fine else None,
        "fine_labels": int(table.shape[1]) if has_fine else 0,
        "sampled_points": len(st.sample_ids),
        "scatter_png": f"class-{k}-scatter.png" if st.count else None,
        "subclasses": subclasses,
    }


def _overall_agreement(stats: list[ClassStats], has_fine: bool) -> dict:
    """(class, pseudo-subclass) pairs as one partition of all examples, against the fine labels."""
    if not has_fine:
        return {"ami": None, "purity": None, "fine_labels": 0}
    table = np.concatenate([st.fine_table for st in stats])
    table = table[:, table.sum(axis=0) > 0]
    return {
        "ami": adjusted_mutual_info_from_table(table),
        "purity": purity(table),
        "fine_labels": int(table.shape[1]),
    }


def write_report(
    cache: TeacherCache,
    projections: SubclassProjections,
    texts: TextSource,
    output_dir: str,
    fine_labels: TextSource | None = None,
    top_k: int = 5,
    max_points: int = 3000,
    seed: int = 0,
    chunk_size: int = 8192,
) -> str:
    """Write output_dir/report.html, its PNGs and summary.json; return the report's path.

    `texts` and `fine_labels` are indexed by example id (a list by position, or a dict); both must cover every
    example id of the cache.
    """
    if projections.num_classes != cache.num_labels or projections.components.shape[1] != cache.hidden_size:
        raise ValueError(
            f"Projections for C={projections.num_classes}, D={projections.components.shape[1]} do not fit the cache "
            f"at {cache.path} (C={cache.num_labels}, D={cache.hidden_size})."
        )
    if top_k < 1 or max_points < 1:
        raise ValueError(f"top_k and max_points must be >= 1, got {top_k} and {max_points}.")
    example_ids = np.asarray(cache.example_ids, dtype=np.int64)
    check_covers(texts, example_ids, "Texts")
    fine_codes, fine_names = None, None
    if fine_labels is not None:
        check_covers(fine_labels, example_ids, "Fine labels")
        fine_codes, fine_names = encode_fine_labels(fine_labels, example_ids)
    names = list(cache.fingerprint.get("label_names") or [str(k) for k in range(cache.num_labels)])
    stats = collect_statistics(
        cache, projections, fine_codes, len(fine_names or []), top_k, max_points, seed, chunk_size
    )
    os.makedirs(output_dir, exist_ok=True)
    classes = [_class_entry(k, names[k], st, projections, fine_names) for k, st in enumerate(stats)]
    for entry, st in zip(classes, stats):
        if entry["scatter_png"]:
            sample_codes = None
            if fine_codes is not None:
                sample_codes = fine_codes[np.searchsorted(example_ids, st.sample_ids)]
            save_scatter(os.path.join(output_dir, entry["scatter_png"]), st, entry["name"], sample_codes, fine_names)
    summary = {
        "report": REPORT_NAME,
        "shares_png": "overview-shares.png",
        "cache": {
            "path": cache.path,
            "teacher": cache.fingerprint.get("teacher"),
            "dataset": cache.fingerprint.get("dataset"),
            "num_examples": cache.num_examples,
            "hidden_size": cache.hidden_size,
            "num_labels": cache.num_labels,
        },
        "options": dict(projections.options.__dict__),
        "top_k": top_k,
        "max_points": max_points,
        "seed": seed,
        "overall": _overall_agreement(stats, fine_names is not None),
        "classes": classes,
    }
    save_shares(os.path.join(output_dir, summary["shares_png"]), stats, names)
    report_path = os.path.join(output_dir, REPORT_NAME)
    page = render_html(cache, projections, summary, texts)
    write_atomic(report_path, lambda p: _write_text(p, page))
    write_json_atomic(os.path.join(output_dir, SUMMARY_NAME), summary)
    return report_path


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
