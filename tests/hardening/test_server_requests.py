"""Bad requests to the server (cases_server.py): a 4xx naming the field / limit / option,
no 5xx, no traceback, and the server still answers afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.cases_server import (
    CASES,
    MAX_BATCH,
    MAX_BODY,
    PER_IMAGE,
    PER_REQUEST,
    SMALL,
    ServerCase,
)

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def client(assets: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from sparsify.deploy import Pipeline
    from sparsify.deploy.server import create_app

    app = create_app(
        Pipeline(assets / "deployment"),
        max_body_bytes=MAX_BODY,
        max_batch=MAX_BATCH,
        max_pixels_per_image=PER_IMAGE,
        max_pixels_per_request=PER_REQUEST,
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("case", [pytest.param(c, id=f"server:{c.id}") for c in CASES])
def test_bad_request_gets_a_4xx_naming_it(client: Any, case: ServerCase) -> None:
    reply = case.send(client)
    text = reply.text
    assert reply.status_code == case.status, text[:2000]
    assert "Traceback" not in text
    missing = [n for n in case.names if n not in text]
    assert not missing, f"detail does not name {missing}: {text[:2000]}"
    assert client.get("/health").status_code == 200


def test_the_good_request_is_answered(client: Any) -> None:
    """The control: the same server answers a well-formed request, so the 4xx above come
    from the faults."""
    reply = client.post("/predict", json={"inputs": [SMALL] * MAX_BATCH, "top_k": 2})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["predictions"]) == MAX_BATCH
