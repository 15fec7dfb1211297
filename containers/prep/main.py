"""The prep job. Everything comes from the environment (containers/README.md):

    CAMPAIGN_SPEC=spec.json CAMPAIGN_OUTPUT_DIR=out [CAMPAIGN_INPUT_DIR=in] [CAMPAIGN_MODEL_DIR=models] \\
        python containers/prep/main.py

Exit codes: 0 done, 1 unexpected failure, 65 data refused (too many malformed rows), 78 bad spec.
"""
from __future__ import annotations

import sys
from pathlib import Path

# containers/ on the path (not containers/prep/, whose module names could shadow others)
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from prep.pipeline import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
