"""Constants shared with the TypeScript side: phases, exit codes, job paths and marker names.

They come from contract.json, which scripts/gen-schemas.ts generates from components/campaign/contract.ts
(containers/schemas/contract.json; in this package a link to it, in the bundle a copy). Nothing here repeats
them by hand.
"""
from __future__ import annotations

import json
import pkgutil
from typing import Dict, Tuple


def _load() -> dict:
    raw = pkgutil.get_data(__name__.rpartition(".")[0], "contract.json")
    if raw is None:
        raise RuntimeError("contract.json is missing from the runner package: rebuild it (scripts/node-runner/build_runner.py)")
    return json.loads(raw.decode("utf-8"))


_CONTRACT = _load()

PHASES: Tuple[str, ...] = tuple(_CONTRACT["phases"])
TERMINAL_PHASES: Tuple[str, ...] = tuple(_CONTRACT["terminalPhases"])
EXIT_CODES: Dict[str, int] = dict(_CONTRACT["exitCodes"])
JOB_PATHS: Dict[str, str] = dict(_CONTRACT["jobPaths"])
MARKERS: Dict[str, str] = dict(_CONTRACT["markers"])

SUCCESS_MARKER: str = MARKERS["datasetComplete"]
CHECKPOINT_MARKER: str = MARKERS["checkpointComplete"]
# What a control object (control.json, a graceful stop) may ask for: stop, restart.
CONTROL_ACTIONS: Tuple[str, ...] = tuple(_CONTRACT["controlActions"])
