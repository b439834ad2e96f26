"""Print the teacher / student table of a demo folder (reads the results files the recipes wrote)."""

from __future__ import annotations

import json
import os

from hf_lelp.errors import run_cli


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def main(folder: str = "runs/demo", split: str = "test") -> None:
    rows = [("teacher (MiniLM-L6)", load(os.path.join(folder, "teacher", "teacher_results.json")))]
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name, "results.json")
        if name.startswith("student") and os.path.isfile(path):
            results = load(path)
            rows.append((f"student ({results['method']})", results))
    print(f"\n{'model':<24} {split + ' accuracy':>14} {'macro-F1':>9} {'export agreement':>17}")
    for name, results in rows:
        agreement = results.get("export_agreement")
        print(
            f"{name:<24} {results[f'{split}_accuracy']:>14.4f} {results[f'{split}_macro_f1']:>9.4f} "
            f"{'' if agreement is None else f'{agreement:.4f}':>17}"
        )


if __name__ == "__main__":
    run_cli(lambda argv: main(*argv))
