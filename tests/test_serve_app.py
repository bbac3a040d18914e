"""Tests of lenetish.serve.app through FastAPI's test client: answers, errors and the schema."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

import lenetish.serve.app
from lenetish import MNISTConvNet, load_split, predict, pretrained
from lenetish.errors import DatasetMismatchError
from lenetish.serve import ServeSettings, create_app
from tests.serve_helpers import until

SETTINGS = ServeSettings(max_upload_bytes=200_000, max_images=8, max_image_pixels=4_000_000)
#: What the page sends with its posts: the server refuses form posts without it.
PAGE_HEADERS = {"X-Requested-With": "lenetish-page"}


def _seven() -> Image.Image:
    """A dark seven on white paper."""
    seven = Image.new("L", (90, 90), 255)
    ImageDraw.Draw(seven).line((15, 15, 75, 15, 35, 80), fill=0, width=9)
    return seven


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _test_digits(count: int) -> tuple[list[Any], list[int]]:
    """The first ``count`` MNIST test digits as nested lists, and their labels."""
    images, labels = load_split(train=False)
    return images[:count].tolist(), labels[:count].tolist()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """A client of the service with the shipped default weights and small limits."""
    app = create_app(settings=SETTINGS)
    with TestClient(
        app, base_url="http://localhost", headers=PAGE_HEADERS, raise_server_exceptions=False
    ) as client:
        yield client


def test_json_pixels_are_classified(client: TestClient) -> None:
    """MNIST test digits sent as uint8 JSON get their right labels, in order."""
    pixels, labels = _test_digits(8)
    answer = client.post("/predict", json={"pixels": pixels, "dtype": "uint8"})
    assert answer.status_code == 200
    assert answer.json()["labels"] == labels


def test_the_answer_holds_names_confidences_and_probabilities(client: TestClient) -> None:
    """Each image gets a class name, its probability, and ten probabilities summing to 1."""
    pixels, _ = _test_digits(2)
    answer = client.post("/predict", json={"pixels": pixels, "dtype": "uint8"}).json()
    assert answer["classes"] == [str(digit) for digit in range(10)]
    assert answer["names"] == [str(label) for label in answer["labels"]]
    assert [round(sum(row), 4) for row in answer["probabilities"]] == [1.0, 1.0]
    assert answer["confidence"] == [max(row) for row in answer["probabilities"]]


def test_a_png_body_is_classified(client: TestClient) -> None:
    """A PNG sent as the body (Content-Type image/png) is prepared and classified."""
    answer = client.post("/predict", content=_png(_seven()), headers={"content-type": "image/png"})
    assert answer.json()["names"] == ["7"]


def test_uploaded_files_are_classified_in_order(client: TestClient) -> None:
    """Several files in one form get one answer each, in the order sent."""
    one = Image.new("L", (60, 60), 255)
    ImageDraw.Draw(one).line((30, 8, 30, 52), fill=0, width=6)
    files = [("file", ("seven.png", _png(_seven()), "image/png")),
             ("file", ("one.png", _png(one), "image/png"))]  # fmt: skip
    assert client.post("/predict", files=files).json()["names"] == ["7", "1"]


def test_the_answer_equals_predict_on_the_same_file(client: TestClient, tmp_path: Path) -> None:
    """The server's preparation and model give what lenetish.predict gives for the file."""
    path = tmp_path / "seven.png"
    path.write_bytes(_png(_seven()))
    expected = predict(pretrained(), [str(path)])
    answer = client.post(
        "/predict", content=path.read_bytes(), headers={"content-type": "image/png"}
    )
    probabilities = torch.tensor(answer.json()["probabilities"])
    assert torch.allclose(probabilities, expected.probabilities, atol=1e-4)


def test_health_describes_the_model_and_limits(client: TestClient) -> None:
    """GET /health names the model, its weights, its dataset and the limits."""
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert (health["model"], health["dataset"], health["device"]) == (
        "MNISTConvNet",
        "mnist",
        "cpu",
    )
    assert health["weights"] == "the shipped weights 'default'"
    assert (health["max_upload_bytes"], health["max_images"]) == (200_000, 8)
    assert health["max_image_pixels"] == 4_000_000


def test_the_page_is_served_without_outside_resources(client: TestClient) -> None:
    """GET / is the drawing page; it loads nothing from other sites."""
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text
    assert "http://" not in page.text and "https://" not in page.text


def test_the_openapi_description_lists_every_body_and_answer(client: TestClient) -> None:
    """The generated schema gives /predict's four body types, its answer and its errors."""
    operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert sorted(operation["requestBody"]["content"]) == [
        "application/json", "image/jpeg", "image/png", "multipart/form-data",
    ]  # fmt: skip
    assert set(operation["responses"]) == {
        "200", "400", "403", "408", "413", "415", "421", "422", "503",
    }  # fmt: skip
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/PredictAnswer"}


def _bomb() -> bytes:
    """A small PNG that decodes to 5,000 x 5,000 pixels (over SETTINGS' 4 million)."""
    return _png(Image.new("1", (5_000, 5_000)))


def _nan_pixels() -> bytes:
    rows = ",".join(["[" + ",".join(["NaN"] * 28) + "]"] * 28)
    return ('{"dtype": "float32", "pixels": [' + rows + "]}").encode()


BAD_REQUESTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "oversized": (
        {"content": b"\x89PNG" + bytes(300_000), "headers": {"content-type": "image/png"}},
        413,
        "over the server's limit of 200,000 bytes",
    ),
    "not an image": (
        {"content": b"GIF89a not really", "headers": {"content-type": "image/png"}},
        422,
        "the request body is not a PNG or JPEG image",
    ),
    "decompression bomb": (
        {"content": _bomb(), "headers": {"content-type": "image/png"}},
        422,
        "is 5000x5000 pixels, more than the 4,000,000",
    ),
    "blank image": (
        {"content": _png(Image.new("L", (30, 30), 0)), "headers": {"content-type": "image/png"}},
        422,
        "the image is of one colour",
    ),
    "unknown type": (
        {"content": b"7", "headers": {"content-type": "text/plain"}},
        415,
        "Content-Type 'text/plain' is not taken",
    ),
    "wrong shape": (
        {"json": {"pixels": [[0] * 28] * 14, "dtype": "uint8"}},
        422,
        r"got shape \(14, 28\)",
    ),
    "NaN pixels": (
        {"content": _nan_pixels(), "headers": {"content-type": "application/json"}},
        422,
        "NaN or infinite",
    ),
    "no dtype": ({"json": {"pixels": [[0] * 28] * 28}}, 400, '"dtype" must be'),
    "a boolean among numbers": (
        {"json": {"pixels": [[0] * 27 + [True]] * 28, "dtype": "uint8"}},
        422,
        "found true/false",
    ),
    "too many images": (
        {"json": {"pixels": [[[0] * 28] * 28] * 9, "dtype": "uint8"}},
        413,
        "9 images in one request; this server takes at most 8",
    ),
    "too many files": (
        {"files": [("file", (f"{i}.png", _png(_seven()), "image/png")) for i in range(9)]},
        413,
        "this server takes at most 8 images",
    ),
    "form without a file": (
        {
            "content": b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\n7\r\n--b--\r\n',
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
        400,
        "holds no file",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_a_bad_request_gets_a_one_line_error_and_the_server_goes_on(
    client: TestClient, case: str
) -> None:
    """Each bad request gets its 4xx and a one-line JSON error; a good request then works."""
    request, status, message = BAD_REQUESTS[case]
    answer = client.post("/predict", **request)
    assert answer.status_code == status
    error = answer.json()
    assert set(error) == {"error", "type"} and "\n" not in error["error"]
    assert error["error"] == json.loads(answer.text)["error"]
    assert re.search(message, error["error"]), error["error"]
    good = client.post("/predict", content=_png(_seven()), headers={"content-type": "image/png"})
    assert (good.status_code, good.json()["names"]) == (200, ["7"])


def test_an_unknown_path_is_a_json_404(client: TestClient) -> None:
    """Paths the service lacks get a one-line JSON error too."""
    answer = client.get("/predictions")
    assert (answer.status_code, answer.json()["error"]) == (404, "Not Found")


def test_concurrent_requests_are_all_answered_rightly(client: TestClient) -> None:
    """Twenty-four requests from eight threads at once each get their own digit's label."""
    pixels, labels = _test_digits(24)

    def ask(index: int) -> int:
        body = {"pixels": pixels[index], "dtype": "uint8"}
        return int(client.post("/predict", json=body).json()["labels"][0])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(24))) == labels


def test_a_body_that_does_not_arrive_in_time_gets_408() -> None:
    """A client that never sends its body is answered 408 after read_timeout_s."""
    app = create_app(MNISTConvNet(), settings=ServeSettings(read_timeout_s=0.05))
    scope = {
        "type": "http", "http_version": "1.1", "method": "POST", "path": "/predict",
        "raw_path": b"/predict", "query_string": b"", "root_path": "", "scheme": "http",
        "headers": [(b"host", b"localhost"), (b"content-type", b"image/png")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 408


def test_a_dataset_against_the_model_record_is_refused() -> None:
    """create_app with a dataset= contradicting the weights' record raises at once."""
    with pytest.raises(DatasetMismatchError, match="fashion-mnist"):
        create_app(pretrained(), dataset="fashion-mnist")


def test_the_answer_uses_the_dataset_class_names() -> None:
    """A model for Fashion-MNIST answers with the garment names."""
    app = create_app(MNISTConvNet(), dataset="fashion-mnist")
    with TestClient(app, base_url="http://localhost") as fashion:
        pixels, _ = _test_digits(1)
        answer = fashion.post("/predict", json={"pixels": pixels, "dtype": "uint8"}).json()
    assert answer["classes"][0] == "T-shirt/top"


def test_the_api_pages_are_off_by_default(client: TestClient) -> None:
    """/docs and /redoc (scripts from a CDN) are not served; /openapi.json is."""
    assert (client.get("/docs").status_code, client.get("/redoc").status_code) == (404, 404)
    assert client.get("/openapi.json").status_code == 200


def test_api_docs_serves_the_api_pages() -> None:
    """ServeSettings(api_docs=True) serves Swagger UI at /docs and ReDoc at /redoc."""
    app = create_app(MNISTConvNet(), settings=ServeSettings(api_docs=True))
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/docs").status_code == 200
        assert client.get("/redoc").status_code == 200


def test_the_page_marks_its_posts() -> None:
    """The page's posts carry the X-Requested-With header the server asks of form posts."""
    with TestClient(create_app(MNISTConvNet()), base_url="http://localhost") as client:
        assert '{ "X-Requested-With": "lenetish-page" }' in client.get("/").text


class GatedDecoder:
    """Stands in for image_pixels: notes each call, then waits until the test releases it."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, data: bytes, name: str, info: Any, max_pixels: int) -> torch.Tensor:
        self.calls += 1
        self.release.wait(120)
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)


def _post_png(client: TestClient) -> Any:
    return client.post("/predict", content=b"png", headers={"content-type": "image/png"})


def test_decodes_beyond_max_decodes_wait_for_a_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """With max_decodes=1, a second upload is not decoded while the first one is."""
    decoder = GatedDecoder()
    monkeypatch.setattr(lenetish.serve.app, "image_pixels", decoder)
    app = create_app(MNISTConvNet(), settings=ServeSettings(max_decodes=1))
    with (
        TestClient(app, base_url="http://localhost") as client,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        try:
            answers = [pool.submit(_post_png, client) for _ in range(2)]
            until(lambda: decoder.calls == 1 and app.state.decodes.waiting == 1, "one waits")
            assert decoder.calls == 1
        finally:
            decoder.release.set()
        assert [answer.result(60).status_code for answer in answers] == [200, 200]
    assert decoder.calls == 2


def test_requests_beyond_max_requests_get_503(monkeypatch: pytest.MonkeyPatch) -> None:
    """With max_requests=1 and one upload in progress, another is answered busy at once."""
    decoder = GatedDecoder()
    monkeypatch.setattr(lenetish.serve.app, "image_pixels", decoder)
    app = create_app(MNISTConvNet(), settings=ServeSettings(max_requests=1))
    with (
        TestClient(app, base_url="http://localhost") as client,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        try:
            first = pool.submit(_post_png, client)
            until(lambda: decoder.calls == 1, "the first upload is being decoded")
            busy = _post_png(client)
        finally:
            decoder.release.set()
        assert first.result(60).status_code == 200
    assert busy.status_code == 503
    assert busy.json()["error"].startswith(
        "the server is busy (requests in progress: 1, as many as it takes at once)"
    )
