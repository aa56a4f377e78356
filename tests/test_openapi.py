from __future__ import annotations

import json

from scripts.export_openapi import TARGET, render


def test_committed_openapi_document_is_current() -> None:
    assert TARGET.read_text() == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_openapi_documents_the_request_forms() -> None:
    schema = json.loads(render())
    assert "/analyze" in schema["paths"]
    components = schema["components"]["schemas"]
    network = components["AnalyzeRequest"]["properties"]["network"]
    refs = {option["$ref"].rsplit("/", 1)[-1] for option in network["oneOf"]}
    assert refs == {"LayeredNetwork", "UniformNetwork"}
