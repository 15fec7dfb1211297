"""Puts scripts/node-runner on sys.path so the runner's package imports as `campaign_runner` in its tests."""
from __future__ import annotations

import sys
from pathlib import Path

RUNNER_DIR = Path(__file__).resolve().parents[2] / "scripts" / "node-runner"
if str(RUNNER_DIR) not in sys.path:
    sys.path.insert(0, str(RUNNER_DIR))
