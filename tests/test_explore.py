"""The pseudo-subclass explorer: AMI against known values, statistics against in-memory numpy, the report as
headless Chromium renders it (sections, images that load, escaped top texts), and the recipe end to end."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from chromium import chromium_binary

from conftest import ROOT, make_texts, run, save_tiny_model, synthetic_fingerprint
from hf_lelp.cache.writer import write_cache
from hf_lelp.explore.agreement import (
    adjusted_mutual_info,
    contingency_table,
    expected_mutual_info,
    mutual_info,
    purity,
)
from hf_lelp.explore.report import write_report
from hf_lelp.methods.projections import FitOptions, fit_projections

N, D, S = 600, 16, 2
# With S = 2 the hard assignment argmax(z1, z2) splits each class's score plane along z1 = z2, so two planted
# subclusters come out separated only when the seeded random rotation does not lay them along that diagonal.
# Fit seed 2 separates both classes (seeds 0 and 1 split one class by noise: a property of LELP, not a bug).
FIT_SEED = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Added to a copy of the report (the report itself has no script): records whether each image decoded.
PROBE_SCRIPT = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) {
    img.dataset.loaded = String(img.complete && img.naturalWidth > 0);
    img.dataset.width = String(img.naturalWidth);
  }
  document.body.dataset.probed = "true";
});
</script>"""


def planted_cache(folder, n: int = N, d: int = D, seed: int = 0, separation: float = 3.0):
    """2 classes x 2 subclusters at ±separation·u_c, with u_c in the null space of the head; weaker noise there.

    Returns the cache and the fine labels ("a-0", "a-1", "b-0", "b-1") by example id.
    """
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(2, d, generator=generator)
    basis, _ = torch.linalg.qr(torch.cat([weight.T, torch.randn(d, d - 2, generator=generator)], dim=1))
    null = basis[:, 2:]  # orthonormal, orthogonal to W's rows
    labels = torch.arange(n) % 2
    subclusters = torch.randint(0, 2, (n,), generator=generator)
    directions = null @ torch.nn.functional.normalize(torch.randn(d - 2, 2, generator=generator), dim=0)
    centres = 4 * weight / weight.norm(dim=1, keepdim=True)
    noise = (torch.randn(n, d - 2, generator=generator) * torch.linspace(1.0, 0.2, d - 2)) @ null.T
    signs = (2 * subclusters - 1).unsqueeze(1).float()
    hidden = centres[labels] + separation * signs * directions.T[labels] + noise
    fingerprint = synthetic_fingerprint(num_examples=n, label_names=["a", "b"])
    cache = write_cache(str(folder), hidden, hidden @ weight.T, labels, weight, torch.zeros(2), fingerprint)
    fine = [f"{'ab'[y]}-{k}" for y, k in zip(labels.tolist(), subclusters.tolist())]
    return cache, fine


def planted_texts(fine: list[str]) -> list[str]:
    # Markup and entities in every text: the report must show them as text, never as elements.
    return [f'{label} example {i} <i class="injected">&amp; more</i>' for i, label in enumerate(fine)]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explore")
    cache, fine = planted_cache(folder / "cache")
    projections = fit_projections(cache, FitOptions(num_subclasses=S, seed=FIT_SEED))
    texts = planted_texts(fine)
    report = write_report(cache, projections, texts, str(folder / "report"), fine_labels=fine, top_k=4)
    summary = json.loads((folder / "report" / "summary.json").read_text())
    return {
        "cache": cache,
        "projections": projections,
        "texts": texts,
        "fine": fine,
        "report": report,
        "summary": summary,
    }


# ---------------------------------------------------------------------------------------------------------------
# AMI and purity
# ---------------------------------------------------------------------------------------------------------------


def test_ami_of_identical_and_permuted_partitions_is_one():
    labels = [0, 0, 1, 1, 2, 2, 2]
    assert adjusted_mutual_info(labels, labels) == pytest.approx(1.0)
    assert adjusted_mutual_info(labels, [5, 5, 9, 9, 7, 7, 7]) == pytest.approx(1.0)  # renamed clusters
    assert adjusted_mutual_info(["x", "x", "y", "y"], [2, 2, 3, 3]) == pytest.approx(1.0)
    assert adjusted_mutual_info([0, 0, 0, 0], [0, 0, 0, 0]) == 1.0  # both trivial: identical by convention
    assert adjusted_mutual_info([0, 0, 0, 0], [0, 1, 2, 3]) == pytest.approx(0.0, abs=1e-12)


def test_ami_of_a_hand_computed_case():
    # U = {3, 3}, V = {2, 4}, observed table [[2, 1], [0, 3]]. Under the hypergeometric model n_11 ~ {0, 1, 2}
    # with probabilities 3/15, 9/15, 3/15; n_11 = 1 is independence (MI 0), n_11 = 0 and 2 both have the observed
    # MI = log(2)/6 + log(3/2)/2. So E[MI] = 6/15 MI, and AMI = (MI - E[MI]) / ((H(U) + H(V))/2 - E[MI]).
    a, b = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]
    mi = math.log(2) / 6 + math.log(1.5) / 2
    entropy_u, entropy_v = math.log(2), math.log(3) - 2 / 3 * math.log(2)
    table = contingency_table(a, b)
    np.testing.assert_array_equal(table, [[2, 1], [0, 3]])
    assert mutual_info(table) == pytest.approx(mi, rel=1e-12)
    assert expected_mutual_info(table) == pytest.approx(0.4 * mi, rel=1e-12)
    expected = (mi - 0.4 * mi) / ((entropy_u + entropy_v) / 2 - 0.4 * mi)
    assert adjusted_mutual_info(a, b) == pytest.approx(expected, rel=1e-10)
    assert expected == pytest.approx(0.355245, abs=1e-6)


def test_ami_matches_sklearn_reference_values():
    # The known values of scikit-learn's own test (arithmetic normaliser, its default).
    a = [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]
    b = [1, 1, 1, 1, 2, 1, 2, 2, 2, 2, 3, 1, 3, 3, 3, 2, 2]
    table = contingency_table(a, b)
    assert mutual_info(table) == pytest.approx(0.41022, abs=5e-6)
    assert expected_mutual_info(table) == pytest.approx(0.15042, abs=5e-6)
    assert adjusted_mutual_info(a, b) == pytest.approx(0.27821, abs=5e-6)
    assert adjusted_mutual_info(a * 110, b * 110) == pytest.approx(0.38, abs=5e-3)


def test_expected_mutual_info_is_the_mean_over_all_permutations():
    a, b = [0, 0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 2, 0]
    brute_force = np.mean([mutual_info(contingency_table(a, p)) for p in itertools.permutations(b)])
    assert expected_mutual_info(contingency_table(a, b)) == pytest.approx(brute_force, rel=1e-10)


def test_ami_of_independent_partitions_is_about_zero():
    rng = np.random.default_rng(0)
    scores = [adjusted_mutual_info(rng.integers(0, 3, 500), rng.integers(0, 4, 500)) for _ in range(20)]
    assert max(abs(s) for s in scores) < 0.02
    assert abs(np.mean(scores)) < 0.005  # adjusted for chance: unbiased, unlike raw MI
    assert mutual_info(contingency_table(rng.integers(0, 3, 500), rng.integers(0, 4, 500))) > 0.001


def test_purity():
    assert purity(contingency_table([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1])) == pytest.approx(5 / 6)
    assert purity(contingency_table([0, 0, 1, 1], [3, 3, 4, 4])) == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Statistics of the report
# ---------------------------------------------------------------------------------------------------------------


def test_statistics_match_in_memory_numpy(planted):
    cache, projections = planted["cache"], planted["projections"]
    hidden = torch.from_numpy(np.array(cache.hidden, dtype=np.float32))
    labels = np.asarray(cache.labels)
    z = projections.scores(hidden).double().numpy()
    projected = projections.project(hidden).double().numpy()
    for c, entry in enumerate(planted["summary"]["classes"]):
        mine = labels == c
        own = z[mine, c]
        assignment = own.argmax(axis=1)
        residual = projected[mine] - projected[mine].mean(axis=0)
        total = float((residual**2).sum(axis=1).mean())
        raw = projected[mine] @ projections.components[c].double().numpy()  # v_sᵀ P h
        assert entry["count"] == mine.sum()
        assert entry["variance"] == pytest.approx(total, rel=1e-4)
        assert entry["explained_fraction"] == pytest.approx(entry["fitted_explained_fraction"], abs=1e-4)
        for s, sub in enumerate(entry["subclasses"]):
            assert sub["count"] == (assignment == s).sum()
            assert sub["share"] == pytest.approx((assignment == s).mean())
            assert sub["variance"] == pytest.approx(raw[:, s].var(), rel=1e-4)
            assert sub["variance_fraction"] == pytest.approx(raw[:, s].var() / total, rel=1e-4)
            top = np.flatnonzero(mine)[np.argsort(-own[:, s], kind="stable")[:4]]
            assert [t["example_id"] for t in sub["top"]] == top.tolist()
        assert sum(sub["share"] for sub in entry["subclasses"]) == pytest.approx(1.0)


def assert_same(got, expected, where: str = "summary") -> None:
    """Equal structure and values; floats up to summation order."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for k, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where}[{k}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), where
    else:
        assert got == expected, where


def test_report_does_not_depend_on_the_chunking(planted, tmp_path):
    write_report(
        planted["cache"],
        planted["projections"],
        planted["texts"],
        str(tmp_path),
        fine_labels=planted["fine"],
        top_k=4,
        chunk_size=37,
    )
    assert_same(json.loads((tmp_path / "summary.json").read_text()), planted["summary"])


def test_planted_subclusters_are_found_and_shuffled_labels_are_not(planted, tmp_path):
    for entry in planted["summary"]["classes"]:
        assert entry["ami"] > 0.5 and entry["purity"] > 0.9 and entry["fine_labels"] == 2
    assert planted["summary"]["overall"]["ami"] > 0.5 and planted["summary"]["overall"]["fine_labels"] == 4
    shuffled = list(np.random.default_rng(0).permutation(planted["fine"]))
    write_report(planted["cache"], planted["projections"], planted["texts"], str(tmp_path), fine_labels=shuffled)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for entry in summary["classes"]:
        assert abs(entry["ami"]) < 0.05
        assert entry["fine_labels"] == 4  # shuffled across classes too


@pytest.mark.bad_input
def test_texts_of_other_data_are_refused(planted, tmp_path):
    with pytest.raises(ValueError, match="caps"):
        write_report(planted["cache"], planted["projections"], planted["texts"][:-5], str(tmp_path))
    with pytest.raises(ValueError, match="Fine labels are missing"):
        write_report(planted["cache"], planted["projections"], planted["texts"], str(tmp_path), fine_labels={0: "a-0"})


# ---------------------------------------------------------------------------------------------------------------
# The report in a browser
# ---------------------------------------------------------------------------------------------------------------


class Dom(HTMLParser):
    """Sections, pseudo-subclass divs, images and top texts (entities decoded) of a serialised DOM."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.sections: list[dict] = []
        self.subclasses: dict[str, str] = {}  # subclass div id -> id of its section
        self.texts: dict[str, list[str]] = {}  # subclass div id -> its top texts
        self.images: list[dict] = []
        self.elements: list[tuple[str, dict]] = []
        self.body: dict = {}
        self._section = self._subclass = self._text = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag == "body":
            self.body = attrs
        elif tag == "section":
            self._section = attrs.get("id")
            self.sections.append(attrs)
        elif tag == "div" and attrs.get("class") == "subclass":
            self._subclass = attrs["id"]
            self.subclasses[self._subclass] = self._section
            self.texts[self._subclass] = []
        elif tag == "span" and attrs.get("class") == "text" and self._subclass:
            self._text = []
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag == "span" and self._text is not None:
            self.texts[self._subclass].append("".join(self._text))
            self._text = None
        elif tag == "div":
            self._subclass = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def dump_dom(page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium_binary(),
            "--headless",
            "--no-sandbox",  # tests run as root in containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "<body" in result.stdout, result.stderr[-3000:]
    return result.stdout


def png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big")


def test_report_renders_in_headless_chromium(planted):
    report = Path(planted["report"])
    page = report.read_text(encoding="utf-8")
    assert "<script" not in page and "://" not in page  # static and self-contained
    probe = report.with_name("probe.html")
    probe.write_text(page.replace("</body>", PROBE_SCRIPT + "</body>"), encoding="utf-8")
    dom = Dom(dump_dom(probe))

    assert dom.body.get("data-probed") == "true", "the probe script did not run after the page loaded"
    assert [s.get("id") for s in dom.sections] == ["overview", "class-0", "class-1"]
    assert [s.get("class") for s in dom.sections[1:]] == ["class-section", "class-section"]
    expected_subclasses = {f"class-{c}-subclass-{s}": f"class-{c}" for c in range(2) for s in range(S)}
    assert dom.subclasses == expected_subclasses

    sources = {img["src"] for img in dom.images}
    assert sources == {"overview-shares.png", "class-0-scatter.png", "class-1-scatter.png"}
    for img in dom.images:
        assert img.get("data-loaded") == "true", f"Chromium could not load {img['src']}"
        assert int(img["data-width"]) == png_width(report.parent / img["src"])

    for c, entry in enumerate(planted["summary"]["classes"]):
        for s, sub in enumerate(entry["subclasses"]):
            expected = [planted["texts"][t["example_id"]] for t in sub["top"]]
            assert len(expected) == 4 and dom.texts[f"class-{c}-subclass-{s}"] == expected
    assert not [attrs for tag, attrs in dom.elements if attrs.get("class") == "injected"], "a text became markup"


def test_a_script_in_a_text_stays_text(planted, tmp_path):
    # The template autoescapes: texts (raw data) may hold markup, quotes and entities.
    texts = [f"{text} <script>alert(\"{i}\")</script> 'quoted' &lt;" for i, text in enumerate(planted["texts"])]
    report = write_report(planted["cache"], planted["projections"], texts, str(tmp_path), top_k=2)
    page = Path(report).read_text(encoding="utf-8")
    assert "<script" not in page and "&lt;script&gt;alert(" in page
    dom = Dom(page)
    assert not [tag for tag, _ in dom.elements if tag in ("script", "i")]
    for c, entry in enumerate(planted["summary"]["classes"]):
        for s, sub in enumerate(entry["subclasses"]):
            assert dom.texts[f"class-{c}-subclass-{s}"] == [texts[t["example_id"]] for t in sub["top"][:2]]


# ---------------------------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recipe_cache(tmp_path_factory):
    """A csv with a fine-label column and a teacher cache built from it by recipes/cache_teacher.py."""
    folder = tmp_path_factory.mktemp("explore_recipe")
    names = ["neg", "pos"]
    texts, labels, fine = make_texts(120, 2, seed=0)
    pd.DataFrame(
        {"review": texts, "stars": [names[y] for y in labels], "topic": [f"{names[f // 2]}-{f % 2}" for f in fine]}
    ).to_csv(folder / "train.csv", index=False)
    save_tiny_model(folder / "teacher", label_names=names)
    data_flags = ["--train_file", str(folder / "train.csv"), "--text_column", "review", "--label_column", "stars"]
    run(
        [sys.executable, "recipes/cache_teacher.py", "--teacher", str(folder / "teacher")]
        + data_flags
        + ["--max_length", "24", "--cache_dir", str(folder / "cache"), "--output_dir", str(folder / "unused")]
        + ["--use_cpu", "true", "--report_to", "none"]
    )
    return folder, data_flags


@pytest.mark.slow
def test_recipe_end_to_end(recipe_cache):
    folder, data_flags = recipe_cache
    out = folder / "explore"
    result = run(
        [sys.executable, "recipes/explore.py", "--cache_dir", str(folder / "cache"), "--output_dir", str(out)]
        + data_flags
        + ["--fine_label_column", "topic", "--num_subclasses", "2", "--top_k", "3"]
    )
    assert json.loads(result.stdout)["report"] == str(out / "report.html")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["num_subclasses"] == 2 and summary["cache"]["num_examples"] == 120
    assert summary["overall"]["fine_labels"] == 4 and summary["overall"]["ami"] is not None
    assert [entry["name"] for entry in summary["classes"]] == ["neg", "pos"]
    assert (folder / "cache" / "projections-S2-label-null-rot-seed0.safetensors").is_file()  # fitted and saved
    page = (out / "report.html").read_text(encoding="utf-8")
    rows = pd.read_csv(folder / "train.csv")
    for entry in summary["classes"]:
        assert png_width(out / entry["scatter_png"]) > 0
        for sub in entry["subclasses"]:
            assert len(sub["top"]) == 3
            for top in sub["top"]:
                text = rows["review"][top["example_id"]]
                assert rows["stars"][top["example_id"]] == entry["name"] and text in page


def load_recipe():
    spec = importlib.util.spec_from_file_location("explore_recipe", f"{ROOT}/recipes/explore.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.bad_input
def test_recipe_refuses_texts_loaded_with_other_caps(recipe_cache, tmp_path):
    folder, data_flags = recipe_cache
    recipe = load_recipe()
    argv = ["--cache_dir", str(folder / "cache"), "--output_dir", str(tmp_path)] + data_flags
    with pytest.raises(ValueError, match="differ"):
        recipe.main(argv + ["--max_train_examples", "100", "--num_subclasses", "2"])
    with pytest.raises(KeyError, match="no fine-label column 'genre'"):
        recipe.main(argv + ["--fine_label_column", "genre", "--num_subclasses", "2"])
