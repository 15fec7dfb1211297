"""The constants the jobs share with TypeScript come from the generated contract, and the manifest prep writes
matches the schema generated from components/campaign/contract.ts."""
from __future__ import annotations

import json
from typing import Any

import pytest

from common.jobspec import CHECKPOINT_MARKER, MANIFEST, SCHEMA_DIR, SUCCESS_MARKER, ExitCode, JobError, validate_manifest


def test_exit_codes_and_markers_are_the_generated_contract() -> None:
    contract = json.loads((SCHEMA_DIR / "contract.json").read_text())
    assert [ExitCode.SUCCESS, ExitCode.FAILURE, ExitCode.DATA_ERROR, ExitCode.INTERRUPTED, ExitCode.CONFIG_ERROR] == [
        contract["exitCodes"][k] for k in ("success", "failure", "dataError", "interrupted", "configError")
    ]
    assert (SUCCESS_MARKER, CHECKPOINT_MARKER, MANIFEST) == ("_SUCCESS", "_COMPLETE.json", "manifest.json")


def test_the_manifest_prep_writes_matches_the_schema(prepared: Any) -> None:
    data_dir, _ = prepared("alpaca")
    manifest = json.loads((data_dir / MANIFEST).read_text())
    validate_manifest(manifest)  # raises on a mismatch


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda m: m.pop("prepHash"), "(root)"),
        (lambda m: m["counts"].update(kept=-1), "counts/kept"),
        (lambda m: m.update(manifestVersion=99), "manifestVersion"),
    ],
)
def test_a_manifest_that_breaks_the_schema_is_named(prepared: Any, change: Any, where: str) -> None:
    data_dir, _ = prepared("alpaca")
    manifest = json.loads((data_dir / MANIFEST).read_text())
    change(manifest)
    with pytest.raises(JobError) as err:
        validate_manifest(manifest)
    assert f"at {where}:" in err.value.message
