"""Optional dependencies (pyproject extras): found before use, or a one-paragraph error naming the extra."""

from __future__ import annotations

import importlib.util

from hf_lelp.base.errors import UserError

# `--report_to` integrations that hf-lelp offers an extra for: the modules transformers accepts, and the extra.
REPORTING_EXTRAS = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard")}


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def require(module: str, extra: str, purpose: str) -> None:
    """Fail before any work starts when `module` (from the extra `hf-lelp[extra]`) is missing."""
    if not installed(module):
        raise UserError(
            f"{purpose} needs the package `{module}`, which is not installed. Install the optional extra: "
            f"pip install 'hf-lelp[{extra}]' (or pip install {module})."
        )


def check_report_to(report_to: str | list[str] | None) -> None:
    """`--report_to tensorboard` without tensorboard fails here, not in a traceback at the Trainer's creation."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        if name not in REPORTING_EXTRAS:
            continue
        modules, extra = REPORTING_EXTRAS[name]
        if not any(installed(module) for module in modules):
            raise UserError(
                f"--report_to {name} needs the package `{modules[0]}`, which is not installed. Install the optional "
                f"extra: pip install 'hf-lelp[{extra}]' (or pip install {modules[0]}), or drop {name} from "
                "--report_to (e.g. --report_to none)."
            )
