"""intent_stream.app: what the worker's app builds outside Faust."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_a_temporary_data_dir_is_removed_when_the_process_exits():
    code = "from intent_stream.app import temporary_data_dir; print(temporary_data_dir())"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    path = Path(run.stdout.strip())
    assert path.name.startswith("intent-stream-data-")
    assert not path.exists()
