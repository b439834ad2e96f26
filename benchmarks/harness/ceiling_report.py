"""The "How much can subclasses add?" section of RESULTS.md (issue #22) from benchmarks/results/ceiling/*.json:
per labelled size, every method's test accuracy (mean ± std over seeds), oracle − KD and LELP − KD with their
noise, LELP's share of the oracle's gain, the plot of both gaps against size, and a reading computed from them."""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np

METHODS = ("ce", "kd", "lelp", "kmeans", "random", "pca", "oracle")
FILE = re.compile(r"^(?P<dataset>.+)_(?P<track>scratch)_labelled(?P<size>\d+|all)\.json$")
HEADROOM = 1.0  # points: the bar for "headroom" (oracle − KD) and for a LELP gain worth having


def load(ceiling_dir: str) -> list[dict]:
    results = []
    for path in sorted(glob.glob(os.path.join(ceiling_dir, "*.json"))):
        match = FILE.match(os.path.basename(path))
        if match:
            with open(path, encoding="utf-8") as handle:
                result = json.load(handle)
            results.append({**result, "_file": os.path.basename(path), "_track": match["track"]})
    return sorted(results, key=lambda r: (r["dataset"], r["_track"], r["labelled_rows"]))


def stats(result: dict, method: str) -> tuple[float, float, int] | None:
    """(mean, std over seeds, seeds) of a method's test accuracy, in points."""
    values = np.array([100 * r["accuracy"] for r in result["runs"] if r["method"] == method], dtype=float)
    if not len(values):
        return None
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)


def gap_between(sa, sb) -> dict | None:
    """a − b in points from two stats, its noise (the two stds combined) and whether it is beyond that noise."""
    if not sa or not sb:
        return None
    difference, noise = sa[0] - sb[0], float(np.hypot(sa[1], sb[1]))
    return {"points": difference, "noise": noise, "beyond_noise": abs(difference) > noise}


def gap(result: dict, a: str, b: str) -> dict | None:
    """a − b of two methods' test runs in one result (see gap_between)."""
    return gap_between(stats(result, a), stats(result, b))


def share(result: dict) -> float | None:
    """(LELP − KD) / (oracle − KD), only where the oracle's gain over KD is beyond noise."""
    oracle, lelp = gap(result, "oracle", "kd"), gap(result, "lelp", "kd")
    if not oracle or not lelp or not oracle["beyond_noise"] or oracle["points"] <= 0:
        return None
    return lelp["points"] / oracle["points"]


def _cell(stat) -> str:
    return f"{stat[0]:.2f} ± {stat[1]:.2f}" if stat else "–"


def _gap_cell(g) -> str:
    if not g:
        return "–"
    verdict = ("ahead" if g["points"] > 0 else "behind") if g["beyond_noise"] else "within noise"
    return f"{g['points']:+.2f} (±{g['noise']:.2f}, {verdict})"


def _size(result: dict) -> str:
    return f"{result['labelled_rows']:,}"


def table(results: list[dict]) -> list[str]:
    header = "| dataset | labelled rows | transfer rows | teacher | " + " | ".join(METHODS)
    header += " | oracle − KD | LELP − KD | LELP's share |"
    lines = [header, "|" + "---|" * (len(METHODS) + 7)]
    for r in results:
        ratio = share(r)
        cells = [_cell(stats(r, m)) for m in METHODS]
        lines.append(
            f"| {r['dataset']} | {_size(r)} | {r['transfer_rows']:,} | {100 * r['teacher']['accuracy']:.2f} | "
            + " | ".join(cells)
            + f" | {_gap_cell(gap(r, 'oracle', 'kd'))} | {_gap_cell(gap(r, 'lelp', 'kd'))} | "
            + (f"{100 * ratio:.0f} %" if ratio is not None else "– (no oracle gain beyond noise)")
            + " |"
        )
    return lines


def tuned_oracle_gaps(weighted: list[dict]) -> dict[tuple[str, int], dict]:
    """Oracle (at its own λ, the weight stage's) − KD per (dataset, labelled rows)."""
    gaps = {}
    for r in weighted:
        g = gap_between(stats(r, "oracle"), stats({"runs": r["kd_runs"]}, "kd"))
        if g:
            gaps[(r["dataset"], r["labelled_rows"])] = g
    return gaps


def _gap_series(axis, kept: list[tuple[int, dict]], label: str, colour: str, **style) -> None:
    """One line of gaps (points ± noise) against the labelled size; nothing when no point has one."""
    if kept:
        axis.errorbar(
            [s for s, _ in kept],
            [g["points"] for _, g in kept],
            yerr=[g["noise"] for _, g in kept],
            capsize=3,
            color=colour,
            label=label,
            **{"marker": "o", **style},
        )


def plot(results: list[dict], path: str, weighted: list[dict] | None = None) -> bool:
    """Oracle − KD (at λ = 1 and, where the weight stage ran, at its own λ) and LELP − KD against the labelled
    size, one panel per dataset."""
    if not results:
        return False
    tuned = tuned_oracle_gaps(weighted or [])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in results})
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        rows = [r for r in results if r["dataset"] == dataset]
        sizes = [r["labelled_rows"] for r in rows]
        for method, colour in (("oracle", "tab:green"), ("lelp", "tab:red"), ("kmeans", "tab:purple")):
            label = f"{method} (λ = 1) − KD" if method == "oracle" else f"{method} − KD"
            _gap_series(axis, [(s, g) for s, r in zip(sizes, rows) if (g := gap(r, method, "kd"))], label, colour)
        kept = [(s, tuned[(dataset, s)]) for s in sizes if (dataset, s) in tuned]
        _gap_series(axis, kept, "oracle at its own λ − KD", "tab:olive", marker="s", linestyle="--")
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("labelled rows (transfer set: every train row)")
        axis.set_ylabel("test accuracy gap (points)")
        axis.set_title(f"{dataset}, student trained from scratch", fontsize=10)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def reading(results: list[dict]) -> list[str]:
    """The answer, computed from the table: where the oracle has headroom, and LELP's part of it."""
    headroom = [r for r in results if (g := gap(r, "oracle", "kd")) and g["beyond_noise"] and g["points"] >= HEADROOM]
    where = ", ".join(f"{r['dataset']} at {_size(r)} labelled rows" for r in results)
    if not headroom:
        best = max(results, key=lambda r: (gap(r, "oracle", "kd") or {"points": -1e9})["points"])
        g = gap(best, "oracle", "kd")
        return [
            f"No measured setting ({where}) has oracle headroom: oracle − KD is below {HEADROOM:g} point beyond noise "
            f"everywhere; the largest is {_gap_cell(g)} ({best['dataset']}, {_size(best)} labelled rows). Where "
            "true subclasses add nothing over KD, no pseudo-subclass method can: LELP's standing against KD here is "
            "no verdict on the method."
        ]
    lines = []
    for r in headroom:
        g, lelp, ratio = gap(r, "oracle", "kd"), gap(r, "lelp", "kd"), share(r)
        won = lelp and lelp["beyond_noise"] and lelp["points"] >= HEADROOM
        lines.append(
            f"- {r['dataset']}, {_size(r)} labelled rows (teacher {100 * r['teacher']['accuracy']:.2f}): the oracle "
            f"has headroom, {_gap_cell(g)}; LELP − KD {_gap_cell(lelp)}, "
            + (f"{100 * ratio:.0f} % of the oracle's gain" if ratio is not None else "share not measurable")
            + ("; LELP gains ≥ 1 point beyond noise there." if won else "; LELP does not gain ≥ 1 point there.")
        )
    return lines


def section(ceiling_dir: str, plots_dir: str, relative_plots: str) -> list[str]:
    results = load(ceiling_dir)
    if not results:
        return weight_section(ceiling_dir) + fine_tuned_section(ceiling_dir) + labels_section(ceiling_dir)
    lines = ["## How much can subclasses add? (issue #22)", ""]
    lines += [
        "The oracle takes the true fine labels (20 Newsgroups' newsgroups inside each coarse class) as its "
        "subclasses: no pseudo-subclass method can know more, so oracle − KD bounds what any of them can add. The "
        "student is a BERT miniature trained *from scratch* (`--student_config tiny`: 2 layers, hidden 128, 2 "
        "heads, the teacher's tokenizer), the regime of the paper's ceiling (binarised CIFAR-100: KD 72.87, LELP "
        "79.91, oracle 86.42). The teacher (all-MiniLM-L6-v2, fine-tuned) learns from the labelled rows only; every "
        "train row is the transfer set, its labels unused (KD and LELP with α = 0, subclasses grouped by the "
        "teacher's predictions); CE learns from the labelled rows. Learning rate (and LELP's S) chosen on "
        "validation with seed 0 at each size; test accuracy over 3 seeds (mean ± std, points). A gap is 'ahead' or "
        "'behind' only beyond the combined std of its two means. Protocol: `benchmarks/harness/ceiling.py`.",
        "",
        f"Result files: {', '.join('`ceiling/' + r['_file'] + '`' for r in results)}.",
        "",
        *table(results),
        "",
    ]
    path = os.path.join(plots_dir, "ceiling_gaps.png")
    if plot(results, path, weight_results(ceiling_dir)):
        lines += [f"![oracle − KD and LELP − KD against the labelled size]({relative_plots}/ceiling_gaps.png)", ""]
    lines += ["Reading (computed from the table):", "", *reading(results), *weighted_oracle_reading(ceiling_dir), ""]
    lines += ["Hyperparameters chosen on validation:", ""]
    lines += [
        f"- {r['dataset']}, {_size(r)} labelled: "
        + "; ".join(f"`{m}` {_chosen(m, h)}" for m, h in r["chosen"].items())
        for r in results
    ]
    lines += ["", "Commands (in run order; each resumes where it stopped):", ""]
    lines += [f"- `{r['command']}` ({r['wall_seconds'] / 60:.0f} min)" for r in results]
    return lines + [""] + weight_section(ceiling_dir) + fine_tuned_section(ceiling_dir) + labels_section(ceiling_dir)


def _chosen(method: str, hparams: dict) -> str:
    """A method's chosen settings; the oracle's S is its number of fine labels (the point stage hands it LELP's S,
    which the oracle source ignores: `chooses_num_subclasses` is False)."""
    if method != "oracle":
        return json.dumps(hparams, sort_keys=True)
    kept = {k: v for k, v in hparams.items() if k != "num_subclasses"}
    return json.dumps(kept, sort_keys=True) + " (S: its fine labels)"


def _read(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _hparams(h: dict) -> str:
    names = {"num_subclasses": "S", "subclass_temperature": "β", "temperature": "τ", "hard_label_weight": "α"}
    return ", ".join(f"{names[k]} = {v:g}" for k, v in sorted(h.items()) if k in names) or "–"


def fine_tuned_section(ceiling_dir: str) -> list[str]:
    """Item 5: the within-class term's share of the loss and gradient, and the fine-tuned track's own sweep."""
    terms = [r for p in sorted(glob.glob(os.path.join(ceiling_dir, "lelp_vs_kd_*_terms.json"))) if (r := _read(p))]
    sweeps = [r for p in sorted(glob.glob(os.path.join(ceiling_dir, "lelp_vs_kd_*_sweep.json"))) if (r := _read(p))]
    if not terms and not sweeps:
        return []
    lines = ["### Why LELP trails KD on fine-tuned students", ""]
    lines += [
        "With our factorised head the LELP loss is exactly KD's loss plus a within-class term (the chain rule of KL: "
        "Σ_c p_c · KL(p_{s|c} ‖ q_{s|c}), × τ² like the rest; `lelp_loss_terms`, tested), and with S = 1 LELP trains "
        "the very same fine-tuned student as KD, to the last digit (`tests/test_lelp_reduces_to_kd.py`). So "
        "whatever LELP loses against KD, the within-class term costs it. How much of the loss and of the gradient "
        "on the student's body (every weight but the two heads) that term carries, on a fixed probe batch of 64 "
        "transfer rows during one LELP run (all-MiniLM-L6-v2 truncated to 2 layers, fine-tuned):",
        "",
        "| dataset | teacher | settings | within-class share of the loss (first / mean / last) | "
        "within ÷ class gradient norm on the body (first / mean / last) |",
        "|---|---|---|---|---|",
    ]
    for r in terms:
        share, ratio = r["within_share_of_loss"], r["within_to_class_grad_ratio"]
        lines.append(
            f"| {r['dataset']} | {r['teacher_folder']} | {_hparams(r['settings'])}, {r['settings']['transfer_rows']} "
            f"rows | {100 * share['first']:.1f} % / {100 * share['mean']:.1f} % / {100 * share['last']:.1f} % | "
            f"{ratio['first']:.1f} / {ratio['mean']:.1f} / {ratio['last']:.1f} |"
        )
    for r in sweeps:
        lines += [
            "",
            f"The fine-tuned track's own search ({r['dataset']}, teacher of `{r['teacher_folder']}`, "
            f"{r['settings']['transfer_rows']} transfer rows; validation accuracy, seed 0):",
            "",
            "| method | setting | validation accuracy |",
            "|---|---|---|",
        ]
        for t in sorted(r["trials"], key=lambda t: (t["method"], json.dumps(t["hparams"], sort_keys=True))):
            lines.append(f"| {t['method']} | {_hparams(t['hparams'])} | {100 * t['accuracy']:.2f} |")
        lines += [
            "",
            "The best of each family on test (3 seeds, mean ± std, points):",
            "",
            "| family | setting | test |",
        ]
        lines.append("|---|---|---|")
        for name, choice in r["chosen"].items():
            runs = [x for x in r["runs"] if x["method"] == choice["method"] and x["hparams"] == choice["hparams"]]
            values = np.array([100 * x["accuracy"] for x in runs])
            cell = (
                f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.2f}" if len(values) else "–"
            )
            lines.append(f"| {name} | {_hparams(choice['hparams'])} | {cell} |")
        lines += fine_tuned_ceiling(r)
        lines += ["", f"Command: `{r['command']}` ({r['wall_seconds'] / 60:.0f} min)."]
    for r in terms:
        lines += ["", f"Command: `{r['command']}` ({r['wall_seconds'] / 60:.0f} min)."]
    return lines + [""]


def fine_tuned_families(sweep: dict) -> dict[str, dict]:
    """Per family on the fine-tuned track: its setting, its λ trials on validation and its test runs. KD and LELP
    (the paper's λ = 1) as the sweep chose them; then the ceiling's rows: LELP and the oracle at their λ chosen on
    validation, the other subclass sources at LELP's setting."""
    ceiling = sweep["ceiling"]

    def family(method: str, hparams: dict, runs: list[dict], searched: bool) -> dict:
        return {
            "hparams": hparams,
            "trials": [t for t in ceiling["trials"] if t["method"] == method] if searched else [],
            "runs": [x for x in runs if x["method"] == method and x["hparams"] == hparams],
        }

    families = {
        n: family(sweep["chosen"][n]["method"], sweep["chosen"][n]["hparams"], sweep["runs"], False)
        for n in ("kd", "lelp")
    }
    order = ("lelp", "oracle", "kmeans", "random", "pca")  # the result file's keys are sorted
    for method in sorted(ceiling["chosen"], key=lambda m: (order.index(m) if m in order else len(order), m)):
        hparams = ceiling["chosen"][method]
        searched = method in ("lelp", "oracle")
        name = "lelp, λ on validation" if method == "lelp" else method
        families[name] = family(method, hparams, ceiling["runs"], searched)
    return families


def fine_tuned_ceiling(sweep: dict) -> list[str]:
    """Oracle − KD and LELP − KD on the fine-tuned track, with the within-class weight λ chosen on validation."""
    if "ceiling" not in sweep:
        return []
    families = fine_tuned_families(sweep)
    as_result = {"runs": [{**x, "method": name} for name, f in families.items() for x in f["runs"]]}
    weights = ", ".join(f"{w:g}" for w in sweep["ceiling"]["weights"])
    lines = [
        "",
        "The ceiling on this track: the oracle (the true newsgroups as subclasses) and LELP with λ "
        f"(`--within_class_weight`) chosen on validation from {weights} at LELP's chosen setting, and the other "
        "subclass sources at that setting with λ = 1; test accuracy over 3 seeds (mean ± std, points):",
        "",
        "| family | setting | validation accuracy per λ | test | − KD |",
        "|---|---|---|---|---|",
    ]
    for name, f in families.items():
        weight = f["hparams"].get("within_class_weight", 1.0 if f["trials"] else None)
        parts = [p for p in (_hparams(f["hparams"]), f"λ = {weight:g}" if weight is not None else "–") if p != "–"]
        setting = ", ".join(parts) or "–"
        per = ", ".join(
            f"{t['hparams'].get('within_class_weight', 1.0):g}: {100 * t['accuracy']:.1f}" for t in f["trials"]
        )
        g = gap(as_result, name, "kd") if name != "kd" else None
        lines.append(f"| {name} | {setting} | {per or '–'} | {_cell(stats(as_result, name))} | {_gap_cell(g)} |")
    oracle, lelp = gap(as_result, "oracle", "kd"), gap(as_result, "lelp, λ on validation", "kd")
    reading = f"Reading (computed): oracle − KD {_gap_cell(oracle)}, LELP (λ on validation) − KD {_gap_cell(lelp)}; "
    return lines + ["", reading + verdict(oracle, lelp) + "."]


def verdict(oracle: dict | None, lelp: dict | None) -> str:
    """Whether the oracle's gain over KD is headroom (≥ HEADROOM points beyond noise) and, there, LELP's share."""
    if not (oracle and oracle["beyond_noise"] and oracle["points"] >= HEADROOM):
        return f"no oracle headroom here (below {HEADROOM:g} point beyond noise): LELP's share is not measurable"
    if not lelp:
        return "the oracle has headroom here; LELP has no runs beside it"
    gained = lelp["beyond_noise"] and lelp["points"] >= HEADROOM
    return (
        f"the oracle has headroom here and LELP takes {100 * lelp['points'] / oracle['points']:.0f} % of it; LELP "
        + ("gains" if gained else "does not gain")
        + f" ≥ {HEADROOM:g} point beyond noise"
    )


def labels_section(ceiling_dir: str) -> list[str]:
    """Item 4: KD and LELP with labels mixed in (α chosen on validation) against CE and the α = 0 runs."""
    found = [r for p in sorted(glob.glob(os.path.join(ceiling_dir, "labels_*.json"))) if (r := _read(p))]
    lines = []
    for r in found:
        by_family: dict[str, list[float]] = {}
        for run in r["runs"]:
            by_family.setdefault(run["family"], []).append(100 * run["accuracy"])
        stats = {f: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0) for f, v in by_family.items()}
        lines += [
            "### Users who have labels: `--hard_label_weight`",
            "",
            f"{r['dataset']}, the strong study's MLP track at {r['transfer_size']:,} transfer rows, teacher "
            f"{r['teacher']['model']} (test {100 * r['teacher']['accuracy']:.2f}); α ∈ {list(r['alphas'])} chosen on "
            "validation (seed 0) for KD and LELP, every other hyperparameter the strong study's validation choice; "
            "test accuracy over 3 seeds:",
            "",
            "| family | setting | test (mean ± std) |",
            "|---|---|---|",
        ]
        lines += [f"| {f} | {_hparams(r['chosen'][f])} | {m:.2f} ± {s:.2f} |" for f, (m, s) in stats.items()]
        lelp, kd, ce = stats.get("lelp + labels"), stats.get("kd + labels"), stats.get("ce")
        if lelp and kd and ce:

            def versus(a, b) -> str:
                d, noise = a[0] - b[0], float(np.hypot(a[1], b[1]))
                verdict = ("ahead" if d > 0 else "behind") if abs(d) > noise else "within noise"
                return f"{d:+.2f} (±{noise:.2f}, {verdict})"

            lines += [
                "",
                f"Reading (computed): LELP + labels − KD + labels {versus(lelp, kd)}; LELP + labels − CE "
                f"{versus(lelp, ce)}; KD + labels − CE {versus(kd, ce)}.",
            ]
        lines += ["", f"Command: `{r['command']}` ({r['wall_seconds'] / 60:.0f} min).", ""]
    return lines


def weight_results(ceiling_dir: str) -> list[dict]:
    """The weight stage's results, by dataset and labelled size (file names sort 1000 before 250)."""
    found = [r for p in glob.glob(os.path.join(ceiling_dir, "*_weight.json")) if (r := _read(p))]
    return sorted(found, key=lambda r: (r["dataset"], r["labelled_rows"]))


def weighted_oracle_reading(ceiling_dir: str) -> list[str]:
    """The oracle at its own λ (chosen on validation by the weight stage) against KD: the fairer ceiling."""
    lines = []
    for r in weight_results(ceiling_dir):
        kd = stats({"runs": r["kd_runs"]}, "kd")
        oracle, lelp = gap_between(stats(r, "oracle"), kd), gap_between(stats(r, "lelp"), kd)
        if oracle:
            weights = {m: r["chosen"][m]["within_class_weight"] for m in ("oracle", "lelp") if m in r["chosen"]}
            lines.append(
                f"- {r['dataset']}, {r['labelled_rows']:,} labelled rows, each at its own λ chosen on validation "
                f"({', '.join(f'{m} {w:g}' for m, w in weights.items())}): oracle − KD {_gap_cell(oracle)}, "
                f"LELP − KD {_gap_cell(lelp)}; {verdict(oracle, lelp)}."
            )
    if not lines:
        return []
    return ["", "The fairer ceiling, λ (the weight stage below) tuned for the oracle and for LELP:", "", *lines]


def weight_section(ceiling_dir: str) -> list[str]:
    """λ, the within-class term's weight, chosen on validation for LELP and the oracle at a point."""
    found = weight_results(ceiling_dir)
    lines = []
    for r in found:
        kd = stats({"runs": r["kd_runs"]}, "kd")
        lines += [
            f"### The within-class term's weight λ ({r['dataset']}, {r['labelled_rows']:,} labelled rows)",
            "",
            "With the factorised head the loss is KD's class term + λ · the within-class term "
            "(`--within_class_weight`; λ = 1 is the paper's loss). λ chosen on validation (seed 0) for LELP and "
            "the oracle at their other chosen settings, then 3 seeds on test:",
            "",
            "| method | validation accuracy per λ | chosen λ | test | − KD |",
            "|---|---|---|---|---|",
        ]
        for method, hparams in r["chosen"].items():
            trials = [t for t in r["selection"]["trials"] if t["method"] == method]
            per = ", ".join(f"{t['hparams']['within_class_weight']:g}: {100 * t['accuracy']:.1f}" for t in trials)
            s = stats(r, method)
            g = gap_between(s, kd)
            lines.append(f"| {method} | {per} | {hparams['within_class_weight']:g} | {_cell(s)} | {_gap_cell(g)} |")
        lines += ["", f"Command: `{r['command']}` ({r['wall_seconds'] / 60:.0f} min).", ""]
    return lines
