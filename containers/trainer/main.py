"""The trainer job. Everything comes from the environment (containers/README.md):

    CAMPAIGN_SPEC=spec.json CAMPAIGN_DATA_DIR=prepared CAMPAIGN_MODEL_DIR=model CAMPAIGN_CHECKPOINT_DIR=ckpt \\
    CAMPAIGN_OUTPUT_DIR=out CAMPAIGN_PROGRESS_FILE=progress.json python containers/trainer/main.py

With spec.gpus > 1 it runs itself under torchrun --nproc_per_node=<gpus>.
Exit codes: 0 done, 1 unexpected failure, 65 data refused, 75 stopped on SIGTERM after a checkpoint, 78 bad spec.
"""
from __future__ import annotations

import sys
from pathlib import Path

# containers/ on the path (not containers/trainer/, whose module names could shadow others)
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from trainer.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
