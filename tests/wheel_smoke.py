"""The installed wheel, away from the checkout: build, install in a fresh venv, train and distil with `hf-lelp`.

    .venv/bin/python tests/wheel_smoke.py [--keep]     # what `make test-wheel` runs (tests/test_wheel.py); needs PyPI

Outside the checkout (a temp dir): the wheel is built from a copy of the files git would ship, installed into a new
venv (the local CPU torch first, so that pip pulls no CUDA build; the rest from PyPI through pip's cache), then this
script, copied next to a tiny csv corpus, runs again with `--inside` under the venv's python: `hf-lelp train-teacher`
and `hf-lelp distill --save_strategy epoch` (a checkpoint save renders the model card from the packaged template),
and the export must load with transformers.pipeline where hf_lelp cannot be imported.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH = "torch==2.13.0"  # the CPU wheel on this machine's disk (as in the Makefile)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# A tiny corpus and BERT, built in-process like tests/conftest.py (the wheel ships no tests, the venv no pytest).
WORDS = {"neg": ["awful", "boring", "dull", "slow"], "pos": ["great", "fun", "lovely", "witty"]}
FILLER = ["the", "a", "movie", "was", "is", "very", "and", "it"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *WORDS["neg"], *WORDS["pos"]]


def run(command: list[str], cwd: str, env: dict | None = None, expect: int = 0) -> subprocess.CompletedProcess:
    start = time.time()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    print(f"+ {' '.join(command)}  ({time.time() - start:.0f} s)", flush=True)
    if result.returncode != expect:
        output = f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        sys.exit(f"exit code {result.returncode} (expected {expect}) from {command}\n{output}")
    return result


def build_and_install(tmp: str) -> str:
    """The wheel of the working tree, installed in a fresh venv under `tmp`; returns the venv's python."""
    # Build from a copy: an in-tree build would leave build/ in the checkout, and ignored files must not leak in.
    source = os.path.join(tmp, "src")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, name)):  # a tracked file deleted in the working tree is skipped
            os.makedirs(os.path.dirname(os.path.join(source, name)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), os.path.join(source, name))
    dist = os.path.join(tmp, "dist")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, source], cwd=tmp)
    (wheel,) = glob.glob(os.path.join(dist, "hf_lelp-*.whl"))
    listing = run([sys.executable, "-m", "zipfile", "-l", wheel], cwd=tmp).stdout
    assert "hf_lelp/hub/lelp_student.md.j2" in listing, listing
    assert "hf_lelp/configs/teacher_rotten_tomatoes.yaml" in listing, listing  # `hf-lelp train-teacher NAME`
    assert "hf_lelp/accelerate_configs/cpu_2proc.yaml" in listing, listing  # `hf-lelp accelerate-config`
    venv = os.path.join(tmp, "venv")
    run([sys.executable, "-m", "venv", venv], cwd=tmp)
    python = os.path.join(venv, "bin", "python")
    run([python, "-m", "pip", "install", "-q", TORCH], cwd=tmp)
    run([python, "-m", "pip", "install", "-q", wheel], cwd=tmp)
    return python


def write_project(folder: str) -> None:
    """Tiny csv files, a tiny BERT checkpoint and the YAML configs of the two subcommands."""
    import numpy as np
    import pandas as pd
    import torch
    import yaml
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    rng = np.random.default_rng(0)
    for split, n in (("train", 96), ("test", 32)):
        labels = [("neg", "pos")[i % 2] for i in range(n)]
        texts = [" ".join(rng.permutation([*rng.choice(WORDS[y], 3), *rng.choice(FILLER, 3)])) for y in labels]
        pd.DataFrame({"review": texts, "stars": labels}).to_csv(os.path.join(folder, f"{split}.csv"), index=False)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    BertForSequenceClassification(config).save_pretrained(os.path.join(folder, "init"))
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True)
    tokenizer.save_pretrained(os.path.join(folder, "init"))
    common = {
        "train_file": "train.csv",
        "test_file": "test.csv",
        "text_column": "review",
        "label_column": "stars",
        "max_length": 16,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32,
        "learning_rate": 1.0e-3,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    teacher = {**common, "teacher_model": "init", "num_train_epochs": 2, "save_strategy": "no"}
    teacher["output_dir"] = "teacher"
    distill = {**common, "teacher": "teacher", "student": "init", "student_num_layers": 1, "num_subclasses": 2}
    distill.update({"num_train_epochs": 1, "cache_dir": "cache", "output_dir": "student"})
    for name, values in (("teacher", teacher), ("distill", distill)):
        with open(os.path.join(folder, f"{name}.yaml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(values, handle)


def inside(folder: str) -> None:
    """Under the fresh venv's python, in `folder` (outside the checkout)."""
    import hf_lelp

    venv = os.path.dirname(os.path.dirname(sys.executable))
    assert os.path.realpath(hf_lelp.__file__).startswith(os.path.realpath(venv)), hf_lelp.__file__
    command = os.path.join(os.path.dirname(sys.executable), "hf-lelp")
    env = {**os.environ, **OFFLINE_ENV}
    write_project(folder)
    print(run([command, "env"], folder, env).stdout)
    run([command, "train-teacher", "teacher.yaml"], folder, env)
    out = os.path.join(folder, "student")
    run([command, "distill", "distill.yaml", "--save_strategy", "epoch"], folder, env)
    error = run([command, "distill", "missing.yaml"], folder, env, expect=2).stderr
    assert error.startswith("hf-lelp: error: Config file missing.yaml not found"), error
    shipped = run([command, "example-config", "distill_rotten_tomatoes"], folder, env).stdout
    assert "method: lelp" in shipped, shipped  # the README's example configs come with the wheel
    cpu_config = run([command, "accelerate-config"], folder, env).stdout
    assert "num_processes: 2" in cpu_config, cpu_config  # the two-CPU-process launch config comes with it too
    checkpoints = glob.glob(os.path.join(out, "checkpoint-*", "README.md"))
    assert checkpoints and os.path.isfile(os.path.join(out, "README.md")), os.listdir(out)
    with open(os.path.join(out, "README.md"), encoding="utf-8") as handle:
        card = handle.read()
    assert "lelp" in card and "pipeline_tag: text-classification" in card, card[:2000]
    # The export is a plain transformers model: it loads where hf_lelp cannot even be imported.
    reload = (
        "import json, sys; sys.modules['hf_lelp'] = None\n"
        "from transformers import pipeline\n"
        f"print(json.dumps(pipeline('text-classification', model={out!r})(['great fun movie', 'dull slow movie'])))"
    )
    predictions = json.loads(run([sys.executable, "-c", reload], folder, env).stdout.strip().splitlines()[-1])
    assert {p["label"] for p in predictions} <= {"neg", "pos"}, predictions
    foreign_data(folder, command, env)
    print(f"wheel smoke test passed: card {os.path.join(out, 'README.md')}, pipeline {predictions}")


FOREIGN = ["positive", "negative", "neutral"]  # the user's order, given with --class_names
ONE_CALL = """
import json, sys
from datasets import load_dataset
from transformers import pipeline
from hf_lelp import LELPConfig, LELPTrainer

data = load_dataset("csv", data_files={"train": "own/train.csv", "test": "own/test.csv"})
data = data.class_encode_column("sentiment")  # sorted names: mapped by name to the teacher's order
args = LELPConfig(output_dir="own_py", num_train_epochs=1, num_subclasses=2, report_to="none", use_cpu=True)
trainer = LELPTrainer(model="init3", teacher="own_teacher", args=args, train_dataset=data["train"],
                      eval_dataset=data["test"], text_column="review", label_column="sentiment", max_length=16)
trainer.train()
trainer.save_model("own_py")
answers = pipeline("text-classification", model="own_py")(["great fun movie", "the a it"])
print(json.dumps({"rows": len(trainer.train_dataset), "labels": [a["label"] for a in answers]}))
"""


def foreign_data(folder: str, command: str, env: dict) -> None:
    """A user's own files as the README's "Your own data" gives them (3 classes named by strings, columns
    review/sentiment, files only), through both commands and the one-call Python API: every output has the user's
    class names, in the user's order, and the user's row count."""
    import numpy as np
    import pandas as pd
    from transformers import AutoTokenizer, BertForSequenceClassification

    rng, words = np.random.default_rng(1), {"positive": WORDS["pos"], "negative": WORDS["neg"], "neutral": FILLER}
    os.makedirs(os.path.join(folder, "own"))
    for split, n in (("train", 48), ("test", 18)):
        labels = [FOREIGN[i % 3] for i in range(n)]
        texts = [" ".join(rng.permutation([*rng.choice(words[y], 3), *rng.choice(FILLER, 3)])) for y in labels]
        pd.DataFrame({"review": texts, "sentiment": labels}).to_csv(
            os.path.join(folder, "own", f"{split}.csv"), index=False
        )
    init = os.path.join(folder, "init")
    model = BertForSequenceClassification.from_pretrained(init, num_labels=3, ignore_mismatched_sizes=True)
    model.save_pretrained(os.path.join(folder, "init3"))
    AutoTokenizer.from_pretrained(init).save_pretrained(os.path.join(folder, "init3"))
    files = ["--train_file", "own/train.csv", "--test_file", "own/test.csv", "--text_column", "review"]
    files += ["--label_column", "sentiment", "--class_names", *FOREIGN, "--max_length", "16", "--use_cpu", "true"]
    files += ["--report_to", "none", "--save_strategy", "no", "--per_device_train_batch_size", "16"]
    run([command, "train-teacher", *files, "--teacher_model", "init3", "--output_dir", "own_teacher"], folder, env)
    run(
        [command, "distill", *files, "--teacher", "own_teacher", "--student", "init3", "--student_num_layers", "1"]
        + ["--num_subclasses", "2", "--num_train_epochs", "1", "--output_dir", "own_student"],
        folder,
        env,
    )
    with open(os.path.join(folder, "own_student", "results.json"), encoding="utf-8") as handle:
        results = json.load(handle)
    assert results["train_examples"] == 48 and results["test_examples"] == 18, results
    for name in ("own_teacher", "own_student"):
        with open(os.path.join(folder, name, "config.json"), encoding="utf-8") as handle:
            id2label = json.load(handle)["id2label"]
        assert [id2label[str(i)] for i in range(3)] == FOREIGN, (name, id2label)
    with open(os.path.join(folder, "own_student", "README.md"), encoding="utf-8") as handle:
        assert "train.csv" in handle.read()
    done = json.loads(run([sys.executable, "-c", ONE_CALL], folder, env).stdout.strip().splitlines()[-1])
    assert done["rows"] == 48 and set(done["labels"]) <= set(FOREIGN), done
    with open(os.path.join(folder, "own_py", "config.json"), encoding="utf-8") as handle:
        assert list(json.load(handle)["id2label"].values()) == FOREIGN
    print(f"foreign data: the user's classes {FOREIGN} and 48 rows in every output; one call answers {done}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="Keep the temp dir (venv, wheel, run) afterwards.")
    parser.add_argument("--inside", metavar="FOLDER", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inside:
        return inside(options.inside)
    start, tmp = time.time(), tempfile.mkdtemp(prefix="hf-lelp-wheel-")
    assert not os.path.realpath(tmp).startswith(os.path.realpath(ROOT) + os.sep), "the temp dir must be outside"
    try:
        python = build_and_install(tmp)
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        script = shutil.copy(os.path.abspath(__file__), work)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        result = run([python, script, "--inside", work], cwd=work, env={**env, **OFFLINE_ENV})
        print(result.stdout[-3000:])
    except BaseException:
        print(f"(kept {tmp} for inspection)", file=sys.stderr)
        raise
    if not options.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wheel smoke test: {time.time() - start:.0f} s in all")


if __name__ == "__main__":
    main()
