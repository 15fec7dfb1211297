"""The base weights a prep node staged, uploaded one model at a time: CAMPAIGN_MODEL_DIR/<id>/<revision>/ to
<CAMPAIGN_MODEL_OUTPUT_URI><id>/<revision>/ (components/campaign/layout.ts, modelPrefix; the prep job stages into
the same <id>/<revision>/ folders, containers/common/jobspec.py staged_dir). One `aws s3 sync` per model keeps
every listing inside that model's folder, which is all the prep node's role may list and write (prepPrefixes in
components/resources/prepStage.ts): a sync to models/ would list the whole prefix, and other campaigns' models.
The models come from the prep spec's stageModels; an id that is not a hub id (s3://, or a local path starting with
'.' or '/': containers/common/jobspec.py is_hub_id) is not staged by the prep job, so there is nothing to upload.
"""
from __future__ import annotations

import os
from typing import Any, List, Tuple


class BadModelRef(ValueError):
    pass


def _part(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or value.startswith("/") or "s3://" in value:
        raise BadModelRef("stageModels: %s %r is not a model id / revision the runner can upload" % (what, value))
    if any(p in ("", ".", "..") for p in value.split("/")):
        raise BadModelRef("stageModels: %s %r has an empty, '.' or '..' part" % (what, value))
    return value


def staged_model_uploads(spec: Any, model_dir: str, model_output_uri: str) -> List[Tuple[str, str]]:
    """(local folder, S3 folder URI) for each model of the prep spec's stageModels, in order, without repeats."""
    models = spec.get("stageModels") if isinstance(spec, dict) else None
    if models is None:
        return []
    if not isinstance(models, list):
        raise BadModelRef("stageModels must be a list, got %s" % type(models).__name__)
    base = model_output_uri.rstrip("/") + "/"
    uploads: List[Tuple[str, str]] = []
    for m in models:
        if not isinstance(m, dict):
            raise BadModelRef("stageModels: an entry is not an object: %r" % (m,))
        if isinstance(m.get("id"), str) and m["id"].startswith(("s3://", ".", "/")):
            continue  # not a hub id: the prep job stages nothing for it
        model_id, revision = _part(m.get("id"), "id"), _part(m.get("revision"), "revision")
        pair = (os.path.join(model_dir, *model_id.split("/"), *revision.split("/")), "%s%s/%s/" % (base, model_id, revision))
        if pair not in uploads:
            uploads.append(pair)
    return uploads
