"""The pseudo-subclass explorer: a static HTML report of what each class's S pseudo-subclass directions pick up.

Per class and pseudo-subclass: its share of the class, the variance its direction carries, and its top texts
(statistics in hf_lelp.explore.stats); a PCA scatter of P h coloured by assignment, and by a fine label when one
is given, with the agreement of assignment and fine label (figures in hf_lelp.explore.plots). The page is the
Jinja template report.html.j2, rendered with autoescape: it shows raw texts from the data.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import os

import jinja2
import numpy as np

from hf_lelp.base.extras import require
from hf_lelp.base.io_utils import write_atomic, write_json_atomic
from hf_lelp.cache.store import TeacherCache
from hf_lelp.explore.plots import save_scatter, save_shares
from hf_lelp.explore.stats import (
    TextSource,
    check_covers,
    class_summary,
    collect_statistics,
    encode_fine_labels,
    overall_agreement,
)
from hf_lelp.methods.projections import SubclassProjections

REPORT_NAME = "report.html"
SUMMARY_NAME = "summary.json"
TEMPLATE_NAME = "report.html.j2"
MAX_TEXT_CHARS = 600  # longer texts are cut in the report (the full text is in the dataset)


def _fmt(value, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def _text_of(texts: TextSource, example_id: int) -> str:
    text = str(texts[int(example_id)])
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + " …"


@functools.cache
def _template() -> jinja2.Template:
    # Package data (see pyproject.toml), read through importlib.resources so that it is found in a wheel too.
    source = (importlib.resources.files(__package__) / TEMPLATE_NAME).read_text(encoding="utf-8")
    environment = jinja2.Environment(
        autoescape=True,  # the texts are raw data: `<script>` in a review must stay text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["fmt"] = _fmt
    return environment.from_string(source)


def render_html(cache: TeacherCache, projections: SubclassProjections, summary: dict, texts: TextSource) -> str:
    fingerprint, options = cache.fingerprint, projections.options
    return _template().render(
        title=(
            f"Pseudo-subclass explorer: {fingerprint.get('teacher', 'teacher')} on "
            f"{fingerprint.get('dataset', 'dataset')}"
        ),
        header=[
            ("teacher", fingerprint.get("teacher")),
            ("dataset", fingerprint.get("dataset")),
            ("N (examples)", cache.num_examples),
            ("D (hidden size)", cache.hidden_size),
            ("C (classes)", cache.num_labels),
            ("cache", cache.path),
        ],
        fit=[
            ("S (pseudo-subclasses)", options.num_subclasses),
            ("grouping", options.grouping),
            ("null_space", options.null_space),
            ("rotate", options.rotate),
            ("seed", options.seed),
        ],
        summary=summary,
        text_of=functools.partial(_text_of, texts),
    )


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
    require("matplotlib", "explore", "The pseudo-subclass explorer (its figures)")
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
    classes = [class_summary(k, names[k], st, projections, fine_names) for k, st in enumerate(stats)]
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
        "overall": overall_agreement(stats, fine_names is not None),
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
