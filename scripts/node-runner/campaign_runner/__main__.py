"""Entry point: `python3 -I campaign-runner.py` (the bundle) or `python3 -m campaign_runner` (the source tree)."""
import sys

from campaign_runner.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
