"""Each peer's own virtual environment, made once with its pinned packages and reused while they match.

A peer never runs in offload's venv: its packages (and theirs) would mix with offload's. The venvs
live under OFFLOAD_BENCH_CACHE (default ~/.cache/offload-bench)/peers/<peer>, made with this
interpreter's `-m venv` (the same Python as offload's rows) and PyPI through pip. A venv whose
recorded pins differ from the wanted ones is made anew.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# What every peer's web app runs on: offload's own versions (requirements.txt), so the server and
# the framework are the same in every row; hiredis because offload's redis-py client has it too.
WEB_PINS = ("fastapi==0.165.0", "uvicorn[standard]==0.54.0", "hiredis==3.5.0")
VENV_TIMEOUT = 120.0
PIP_TIMEOUT = 600.0


class VenvError(RuntimeError):
    """A peer's venv could not be made: its rows say so instead of a figure."""


def cache_root() -> Path:
    base = os.environ.get("OFFLOAD_BENCH_CACHE") or str(Path.home() / ".cache" / "offload-bench")
    return Path(base) / "peers"


def stamp_text(pins: tuple[str, ...]) -> str:
    return "".join(f"{pin}\n" for pin in sorted({*pins, *WEB_PINS}))


def ensure_venv(name: str, pins: tuple[str, ...], root: Path | None = None) -> Path:
    """The venv of peer `name` with `pins` (and WEB_PINS) installed, made unless already there."""
    home = (root or cache_root()) / name
    stamp = home / "offload-pins.txt"
    wanted = stamp_text(pins)
    python = home / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(home)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted.split()],
    ]
    for step, timeout in zip(steps, (VENV_TIMEOUT, PIP_TIMEOUT), strict=True):
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            shutil.rmtree(home, ignore_errors=True)
            raise VenvError(f"{name}: `{' '.join(step[:4])} …` took over {timeout:g} s") from None
        if done.returncode != 0:
            shutil.rmtree(home, ignore_errors=True)
            last = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise VenvError(f"{name}: `{' '.join(step[:4])} …` failed: {' / '.join(last)}")
    # Written last: a venv interrupted half-way has no stamp and is made again next time.
    stamp.write_text(wanted)
    return home


def installed(home: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """The versions pip installed of `packages` (normalised names) in the venv at `home`."""
    done = subprocess.run(
        [str(home / "bin" / "python"), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    wanted = {p.lower().replace("_", "-") for p in packages}
    found: dict[str, str] = {}
    for line in done.stdout.splitlines():
        name, _, version = line.partition("==")
        if name.lower().replace("_", "-") in wanted:
            found[name.lower()] = version
    return found
