"""The prep node's runner uploads each staged model to its own models/<id>/<revision>/ folder, never all of
models/ (the prep role may list and write only those folders: prepPrefixes in components/resources/prepStage.ts)."""
from __future__ import annotations

import os

import pytest

import runner_path  # noqa: F401  (puts the runner package on sys.path)
from campaign_runner.models import BadModelRef, staged_model_uploads


def test_two_models_go_to_two_folders_in_the_order_of_the_spec():
    spec = {"kind": "prep", "stageModels": [{"id": "Qwen/Qwen2.5-7B-Instruct", "revision": "main", "family": "qwen2"},
                                            {"id": "t5-base", "revision": "v1.0", "family": "t5"},
                                            {"id": "t5-base", "revision": "v1.0", "family": "t5"}]}
    assert staged_model_uploads(spec, "/work/models", "s3://b/models/") == [
        (os.path.join("/work/models", "Qwen", "Qwen2.5-7B-Instruct", "main"), "s3://b/models/Qwen/Qwen2.5-7B-Instruct/main/"),
        (os.path.join("/work/models", "t5-base", "v1.0"), "s3://b/models/t5-base/v1.0/"),
    ]
    assert staged_model_uploads(spec, "/m", "s3://b/models")[1][1] == "s3://b/models/t5-base/v1.0/", "the base URI's slash is optional"


def test_no_models_nothing_to_upload():
    assert staged_model_uploads({"kind": "prep", "stageModels": []}, "/m", "s3://b/models/") == []
    assert staged_model_uploads({"kind": "prep"}, "/m", "s3://b/models/") == []


def test_ids_that_are_not_hub_ids_are_not_staged_so_not_uploaded():
    spec = {"stageModels": [{"id": "s3://b/weights/", "revision": "main"}, {"id": "/work/tiny", "revision": "main"},
                            {"id": "./tiny", "revision": "main"}, {"id": "t5-base", "revision": "main"}]}
    assert [uri for _, uri in staged_model_uploads(spec, "/m", "s3://b/models/")] == ["s3://b/models/t5-base/main/"]


@pytest.mark.parametrize("model", [{"id": "a/../escape", "revision": "main"}, {"id": "a//b", "revision": "main"},
                                   {"id": "ok", "revision": "../up"}, {"id": "ok", "revision": ""}, {"id": "ok"}, {"id": 3}, "text"])
def test_a_model_that_is_not_a_plain_id_and_revision_is_refused(model):
    with pytest.raises(BadModelRef):
        staged_model_uploads({"stageModels": [model]}, "/m", "s3://b/models/")
