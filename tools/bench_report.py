"""Small helpers the benchmark tools share: their JSON output and the process's memory figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], out: Path | None) -> None:
    """The report as indented JSON, to ``out`` or (``None``) to stdout."""
    text = json.dumps(report, indent=2) + "\n"
    if out is None:
        print(text, end="")
    else:
        out.write_text(text)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next peak is what follows alone."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MB, from ``/proc/self/status`` (Linux; ``OSError``
    elsewhere). ``ru_maxrss`` is no substitute in a child process: it starts at the parent's peak
    at fork time and survives exec, while ``VmHWM`` belongs to this address space."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"{field} not in /proc/self/status")
