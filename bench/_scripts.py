"""What the benchmarks that train share: the top-level scripts run as a user runs them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *arguments) -> None:
    """Run generate_data.py or train.py with these arguments, its progress on our stderr; exit
    with one line naming the command if it fails."""
    command = [sys.executable, str(ROOT / name), *map(str, arguments)]
    if subprocess.run(command, stdout=sys.stderr).returncode:
        sys.exit(f"{Path(sys.argv[0]).name}: {' '.join(command[1:])} failed")
