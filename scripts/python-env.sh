#!/usr/bin/env bash
# Creates (or reuses) the project's Python environment in .venv from containers/requirements-cpu.txt:
# the CPU builds of the jobs' libraries, for the tests and the local rehearsal. Prints the python path.
# The venv sees the machine's site packages (--system-site-packages) so a preinstalled moto_server works.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${CAMPAIGN_VENV:-$root/.venv}"
requirements="$root/containers/requirements-cpu.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)

if [[ ! -x "$venv/bin/python" ]]; then
    echo "campaign: creating the Python environment in $venv (first use only)" >&2
    python3 -m venv --system-site-packages "$venv"
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "campaign: installing $(basename "$requirements") into $venv" >&2
    PIP_RETRIES="${PIP_RETRIES:-0}" "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
