"""Run the real `r1lab` console script in a subprocess and check how it fails."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
R1LAB = shutil.which("r1lab", path=str(Path(sys.executable).parent)) or "r1lab"


def r1lab(*args: str, cache: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # this tree first on the path, so the console script runs it; a cache folder for the tiny model aliases
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "R1LAB_CACHE": str(cache), "R1LAB_DEBUG": ""}
    env.pop("R1LAB_DEBUG")
    return subprocess.run([R1LAB, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, no traceback, and exactly one `error:` line on stderr holding every fragment."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
