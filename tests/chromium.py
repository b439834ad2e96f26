"""Find a Chromium for the browser tests, installing Debian's `chromium` package when we are root with apt.

The explorer test renders its HTML in a real browser, so a missing browser is an error (never a skip): CI must
run the test. `CHROMIUM` in the environment names a binary explicitly.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
APT_INSTALL = ("apt-get", "install", "-y", "--no-install-recommends", "chromium")
APT_TIMEOUT_S = 1800
LOCK_PATH = os.path.join(tempfile.gettempdir(), "hf_lelp-chromium-install.lock")


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _apt(command: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(command),
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT_S,
    )


def install_chromium() -> None:
    """apt-get install chromium; `apt-get update` first only when the install fails without it (stale lists)."""
    result = _apt(APT_INSTALL)
    if result.returncode != 0:
        update = _apt(("apt-get", "update"))
        if update.returncode != 0:
            raise RuntimeError(f"`apt-get update` failed:\n{update.stderr[-3000:]}")
        result = _apt(APT_INSTALL)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(APT_INSTALL)}` failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")


def chromium_binary() -> str:
    """Path of chromium / chromium-browser / google-chrome; installs Debian's chromium when none is on PATH."""
    found = find_chromium()
    if found:
        return found
    if os.environ.get("CHROMIUM"):
        raise RuntimeError(f"CHROMIUM={os.environ['CHROMIUM']!r} is not an executable on PATH.")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            "No Chromium on PATH (looked for " + ", ".join(CANDIDATES) + ") and it cannot be installed here (needs "
            "root and apt-get). Install it, e.g. `sudo apt-get install --no-install-recommends chromium`, or set "
            "CHROMIUM to the browser's path."
        )
    # One installer at a time: parallel test processes would otherwise fight over the dpkg lock.
    with open(LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_chromium()
        if not found:
            install_chromium()
            found = find_chromium()
    if not found:
        raise RuntimeError(f"`{' '.join(APT_INSTALL)}` succeeded but no Chromium binary is on PATH.")
    return found
