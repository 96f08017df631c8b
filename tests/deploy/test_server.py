"""The HTTP server over loopback: a real uvicorn in a thread, a real HTTP client (httpx)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sparsify.deploy import Pipeline, to_jsonable
from sparsify.runner import RunResult

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MAX_BODY = 64 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn serving `create_app(pipeline)` on 127.0.0.1 in a background thread."""

    def __init__(self, pipeline: Pipeline, **limits: Any) -> None:
        import uvicorn

        from sparsify.deploy.server import create_app

        self.port = free_port()
        config = uvicorn.Config(
            create_app(pipeline, **limits), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=60, trust_env=False)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def image_server(classifier_run: RunResult) -> Iterator[Server]:
    server = Server(Pipeline(classifier_run.deployment_dir), max_body_bytes=MAX_BODY, max_batch=8)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def text_servers(nlp_deployments: dict[str, Path]) -> Iterator[dict[str, Server]]:
    servers = {
        uc: Server(Pipeline(nlp_deployments[uc]), max_body_bytes=MAX_BODY)
        for uc in (
            "nlp-sentiment_analysis",
            "nlp-named_entity_recognition",
            "nlp-question_answering",
        )
    }
    yield servers
    for server in servers.values():
        server.stop()


def png(size: tuple[int, int] = (20, 16), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_health_info_and_predict(image_server: Server, classifier_run: RunResult) -> None:
    client = image_server.client
    assert client.get("/health").json() == {"status": "ok", "task": "image-classification"}
    info = client.get("/info").json()
    assert info["task"] == "image-classification" and info["labels"] == ["a", "b", "c"]
    assert info["inputs"][0]["name"] == "input" and info["max_body_bytes"] == MAX_BODY
    assert info["options"] == {"top_k": 1} and "inputs" in info["request_schema"]["properties"]
    pipe = Pipeline(classifier_run.deployment_dir)
    want = to_jsonable(pipe(Image.open(io.BytesIO(png())), top_k=2))
    reply = client.post("/predict", json={"inputs": b64(png()), "top_k": 2})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"task": "image-classification", "predictions": [want]}
    data_url = "data:image/png;base64," + b64(png())
    reply = client.post("/predict", json={"inputs": [data_url, b64(png((9, 30)))]})
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 2
    upload = client.post(
        "/predict",
        files=[("file", ("a.png", png(), "image/png")), ("file", ("b.png", png(), "image/png"))],
        data={"top_k": "2"},
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["predictions"] == [want, want]


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b'{"inputs": ', "headers": {"content-type": "application/json"}}, 422, "json"),
        ({"json": {"inputs": 3}}, 422, "string"),
        ({"json": {"inputs": b64(png()), "top_k": "2"}}, 422, "integer"),
        ({"json": {"inputs": b64(png()), "top_k": 0}}, 422, "greater than"),
        ({"json": {"inputs": b64(png()), "extra": 1}}, 422, "extra"),
        ({"json": {"inputs": b64(png()), "top_k": 9}}, 400, "top_k must be"),
        ({"json": {"inputs": "not base64 !!"}}, 400, "not valid base64"),
        ({"json": {"inputs": b64(b"GIF89a broken")}}, 400, "cannot decode"),
        ({"json": {"inputs": [b64(png())] * 9}}, 413, "limit is 8"),
        ({"json": {"inputs": "A" * (MAX_BODY + 10)}}, 413, "over the limit"),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "content type"),
        ({"files": {"file": ("x.png", b"garbage", "image/png")}}, 400, "cannot decode"),
        ({"data": {"top_k": "1"}}, 415, "content type"),
        ({"files": {"top_k": (None, "1")}}, 400, "without an image file"),
        (
            {"files": {"file": ("x.png", png(), "image/png")}, "data": {"top_k": "many"}},
            422,
            "integer",
        ),
    ],
)
def test_bad_requests_get_4xx_with_a_message(
    image_server: Server, kwargs: dict[str, Any], status: int, message: str
) -> None:
    reply = image_server.client.post("/predict", **kwargs)
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    assert detail and message.lower() in json.dumps(detail).lower()


def test_chunked_body_over_the_limit_is_refused(image_server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": "'
        for _ in range(20):
            yield b"A" * 8192
        yield b'"}'

    reply = image_server.client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 413
    assert image_server.client.get("/health").status_code == 200


def test_text_servers(text_servers: dict[str, Server], nlp_deployments: dict[str, Path]) -> None:
    sentiment = text_servers["nlp-sentiment_analysis"].client
    want = to_jsonable(Pipeline(nlp_deployments["nlp-sentiment_analysis"])("a good movie"))
    reply = sentiment.post("/predict", json={"inputs": ["a good movie", "a bad film"]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"][0] == want
    pair = sentiment.post("/predict", json={"inputs": {"text": "a good movie", "text_pair": "x"}})
    assert pair.status_code == 200 and pair.json()["predictions"][0]["label"] in ("neg", "pos")
    mixed = sentiment.post("/predict", json={"inputs": ["a", {"text": "a", "text_pair": "b"}]})
    assert mixed.status_code == 400 and "text_pair" in mixed.json()["detail"]
    for body in ({"inputs": ""}, {"inputs": "   "}, {"inputs": None}, {"inputs": []}):
        assert sentiment.post("/predict", json=body).status_code == 422
    files = {"file": ("a.png", png(), "image/png")}
    assert sentiment.post("/predict", files=files).status_code == 400  # text takes JSON
    ner = text_servers["nlp-named_entity_recognition"].client.post(
        "/predict", json={"inputs": "john lives in paris"}
    )
    assert ner.status_code == 200 and isinstance(ner.json()["predictions"][0], list)
    qa = text_servers["nlp-question_answering"].client
    item = {"question": "what city ?", "context": "john lives in paris ."}
    answer = qa.post("/predict", json={"inputs": item}).json()["predictions"][0]
    assert item["context"][answer["start"] : answer["end"]] == answer["answer"]
    long_question = {"question": " ".join(["city"] * 60), "context": "paris ."}
    reply = qa.post("/predict", json={"inputs": long_question})
    assert reply.status_code == 400 and "tokens" in reply.json()["detail"]
    assert qa.post("/predict", json={"inputs": {"question": "x"}}).status_code == 422


def test_concurrent_burst(image_server: Server, text_servers: dict[str, Server]) -> None:
    """32 requests over 8 threads per server: all answered, each as when sent alone."""
    jobs: list[tuple[Server, dict[str, Any]]] = []
    for i in range(32):
        colour = (i * 7 % 256, 255 - i * 5 % 256, 80)
        jobs.append((image_server, {"inputs": b64(png((12 + i, 16), colour)), "top_k": 3}))
    ner = text_servers["nlp-named_entity_recognition"]
    sentiment = text_servers["nlp-sentiment_analysis"]
    for i in range(32):
        server = ner if i % 2 else sentiment
        jobs.append(
            (server, {"inputs": ["john lives in paris", "a good movie"][i % 2 :][:1] * (1 + i % 3)})
        )
    alone = [server.client.post("/predict", json=body).json() for server, body in jobs]

    def send(job: tuple[Server, dict[str, Any]]) -> tuple[int, Any]:
        server, body = job
        with httpx.Client(base_url=server.url, timeout=120, trust_env=False) as client:
            reply = client.post("/predict", json=body)
        return reply.status_code, reply.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(send, jobs))
    assert [status for status, _ in together] == [200] * len(jobs)
    assert [body for _, body in together] == alone


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["inputs", "top_k", "text", "text_pair", "x"]) | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=JSON, raw=st.binary(max_size=200), kind=st.sampled_from(["json", "bytes", "multipart"]))
def test_fuzzed_bodies_never_get_5xx(
    image_server: Server, text_servers: dict[str, Server], body: Any, raw: bytes, kind: str
) -> None:
    for server in (
        image_server,
        text_servers["nlp-sentiment_analysis"],
        text_servers["nlp-question_answering"],
    ):
        client = server.client
        if kind == "json":
            reply = client.post(
                "/predict", content=json.dumps(body), headers={"content-type": "application/json"}
            )
        elif kind == "bytes":
            reply = client.post(
                "/predict", content=raw, headers={"content-type": "application/json"}
            )
        else:
            reply = client.post(
                "/predict", files={"file": ("x", raw, "image/png")}, data={"top_k": str(body)[:20]}
            )
        assert reply.status_code < 500, reply.text
        assert 200 <= reply.status_code < 300 or reply.json()["detail"]
    assert image_server.client.get("/health").status_code == 200


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(min_size=0, max_size=200), top_k=st.integers(-3, 5))
def test_fuzzed_texts_never_get_5xx(text_servers: dict[str, Server], text: str, top_k: int) -> None:
    for name, body in (
        ("nlp-sentiment_analysis", {"inputs": text, "top_k": top_k}),
        ("nlp-named_entity_recognition", {"inputs": [text, text]}),
        ("nlp-question_answering", {"inputs": {"question": text, "context": text}}),
    ):
        reply = text_servers[name].client.post("/predict", json=body)
        assert reply.status_code < 500, (name, body, reply.text)
