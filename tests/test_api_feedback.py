"""Feedback API against a running service: inferences arrive through OTLP, feedback through the
API and the pipeline's writer, and what the table holds is checked through the SQL endpoint."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import confluent_kafka
import httpx
import orjson
import pytest

from tests.conftest import Service, wait_for
from tests.kafka_helpers import Role, mock_cluster, role_env
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, new_trace_id, traces_json
from tests.pii_samples import PII

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def send_inference(service: Service, key: str | None = None) -> str:
    """One chat span through OTLP/HTTP; returns its inference id."""
    trace_id = new_trace_id()
    r = httpx.post(
        f"{service.http_url}/v1/traces",
        content=traces_json([json_span(GENAI_ATTRIBUTES, trace_id=trace_id, name="chat")]),
        headers={**_auth(key or service.key), "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    found = service.sql(f"SELECT inference_id FROM llm_inferences WHERE trace_id = '{trace_id}'", key)
    assert found.strip(), "the inference was not stored"
    return found.strip()


def url(service: Service, inference_id: str) -> str:
    return f"{service.api_url}/api/v1/metrics/inferences/{inference_id}/feedback"


def post(
    service: Service, inference_id: str, body: object, key: str | None = None, **headers: str
) -> httpx.Response:
    # json.dumps escapes non-ASCII, so a lone surrogate travels as JSON allows (`\ud800`).
    return httpx.post(
        url(service, inference_id),
        content=json.dumps(body),
        headers={**_auth(key or service.key), "content-type": "application/json", **headers},
        timeout=30,
    )


def get(service: Service, inference_id: str, key: str | None = None) -> httpx.Response:
    return httpx.get(url(service, inference_id), headers=_auth(key or service.key), timeout=30)


def test_feedback_round_trip_with_summary_and_sentiment(service: Service) -> None:
    inference_id = send_inference(service)
    good = post(
        service,
        inference_id,
        {"thumbs_up": True, "rating": 5, "comment": "Great answer, thank you so much!"},
    )
    assert good.status_code == 201, good.text
    stored = good.json()
    assert stored["inference_id"] == inference_id
    assert stored["rating"] == 5 and stored["thumbs_up"] is True
    assert stored["comment_sentiment"] > 0.5 and stored["comment_sentiment_label"] == "positive"

    bad = post(
        service, inference_id, {"thumbs_up": False, "rating": 2, "comment": "Terrible, wrong and useless."}
    )
    assert bad.status_code == 201, bad.text
    assert bad.json()["comment_sentiment"] < -0.5 and bad.json()["comment_sentiment_label"] == "negative"
    demo = post(service, inference_id, {"demonstration": "Paris is the capital of France."})
    assert demo.status_code == 201, demo.text
    assert demo.json()["comment_sentiment"] is None

    listed = get(service, inference_id)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [i["feedback_id"] for i in body["items"]] == [
        good.json()["feedback_id"],
        bad.json()["feedback_id"],
        demo.json()["feedback_id"],
    ]
    assert body["items"][2]["demonstration"] == "Paris is the capital of France."
    summary = body["summary"]
    assert summary["count"] == 3 and summary["ratings"] == 2 and summary["average_rating"] == 3.5
    assert summary["thumbs_up"] == 1 and summary["thumbs_down"] == 1 and summary["comments"] == 2
    expected = (stored["comment_sentiment"] + bad.json()["comment_sentiment"]) / 2
    assert summary["average_sentiment"] == pytest.approx(expected, abs=1e-3)


def test_an_inference_without_feedback_lists_nothing(service: Service) -> None:
    inference_id = send_inference(service)
    body = get(service, inference_id).json()
    assert body["items"] == []
    assert body["summary"]["count"] == 0 and body["summary"]["average_rating"] is None


def test_a_retried_post_is_stored_once(service: Service) -> None:
    inference_id = send_inference(service)
    first = post(service, inference_id, {"rating": 4}, **{"Idempotency-Key": "retry-me-1"})
    again = post(service, inference_id, {"rating": 4}, **{"Idempotency-Key": "retry-me-1"})
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json() == first.json()

    own_id = str(uuid.uuid4())
    assert post(service, inference_id, {"feedback_id": own_id, "thumbs_up": True}).status_code == 201
    assert post(service, inference_id, {"feedback_id": own_id, "thumbs_up": True}).status_code == 200

    assert get(service, inference_id).json()["summary"]["count"] == 2
    stored = service.sql(f"SELECT count() FROM feedback FINAL WHERE inference_id = '{inference_id}'")
    assert stored.strip() == "2"


def test_pii_in_a_comment_is_masked_before_storage(service: Service) -> None:
    inference_id = send_inference(service)
    comment = f"Wrong. Write to me at {PII['EMAIL']} or call {PII['PHONE']}."
    r = post(service, inference_id, {"comment": comment, "demonstration": f"Contact {PII['EMAIL']}"})
    assert r.status_code == 201, r.text
    assert PII["EMAIL"] not in r.text and "<EMAIL>" in r.json()["comment"]
    stored = service.sql(
        "SELECT comment, demonstration, pii_found['EMAIL'], pii_found['PHONE'] FROM feedback FINAL "
        f"WHERE inference_id = '{inference_id}' FORMAT TSV"
    )
    assert PII["EMAIL"] not in stored and PII["PHONE"] not in stored
    comment_col, demo_col, emails, phones = stored.rstrip("\n").split("\t")
    assert "<EMAIL>" in comment_col and "<PHONE>" in comment_col and "<EMAIL>" in demo_col
    assert (emails, phones) == ("2", "1")
    assert PII["EMAIL"] not in service.logs()


def test_another_projects_key_gets_404_and_sees_nothing(service: Service) -> None:
    inference_id = send_inference(service)
    assert post(service, inference_id, {"rating": 3, "comment": "fine"}).status_code == 201
    other = service.extra_keys["other"]
    assert post(service, inference_id, {"rating": 1}, key=other).status_code == 404
    assert get(service, inference_id, key=other).status_code == 404
    assert service.sql("SELECT count() FROM feedback", other).strip() == "0"
    assert get(service, inference_id).json()["summary"]["count"] == 1  # the refused POST wrote nothing


def test_unknown_inference_is_404(service: Service) -> None:
    missing = str(uuid.uuid4())
    assert post(service, missing, {"rating": 3}).status_code == 404
    assert get(service, missing).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "thumbs_up"),
        ({"rating": 6}, "rating"),
        ({"rating": 0}, "rating"),
        ({"rating": "5"}, "rating"),
        ({"rating": 4.5}, "rating"),
        ({"thumbs_up": "yes"}, "thumbs_up"),
        ({"comment": "   "}, "comment"),
        ({"comment": "bad \ud800 text"}, "comment"),
        ({"comment": "x" * 10_001}, "comment"),
        ({"rating": 3, "stars": 3}, "stars"),
        ({"rating": 3, "feedback_id": "not-a-uuid"}, "feedback_id"),
    ],
)
def test_bad_feedback_is_422_naming_the_field(service: Service, body: dict, field: str) -> None:
    inference_id = send_inference(service) if field == "thumbs_up" and not body else str(uuid.uuid4())
    r = post(service, inference_id, body)
    assert r.status_code == 422, r.text
    assert field in r.text


def test_bad_id_and_missing_key(service: Service) -> None:
    r = post(service, "not-a-uuid", {"rating": 3})
    assert r.status_code == 422 and "inference_id" in r.text
    assert httpx.post(url(service, str(uuid.uuid4())), json={"rating": 3}).status_code == 401
    assert httpx.get(url(service, str(uuid.uuid4()))).status_code == 401


def test_distributed_writer_takes_feedback_directly(tmp_path: Path) -> None:
    """In distributed mode the writer process serves the API and inserts feedback itself (no topic
    carries it): an inference arrives on the enriched topic, feedback on the writer's API port."""
    owner, bootstrap = mock_cluster()
    key, project = "il_feedback_writer_key", "fbproject"
    env = role_env(tmp_path, bootstrap, INFERLINE_API_KEYS=f"{key}={project}")
    writer = Role("writer", env, tmp_path).start()
    try:
        inference_id, trace_id = str(uuid.uuid4()), new_trace_id()
        row = {
            "project_id": project,
            "inference_id": inference_id,
            "trace_id": trace_id,
            "start_time": time.time_ns(),
            "model": "gpt-4o-mini",
            "version": 1,
        }
        producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
        producer.produce("inferline.inferences", orjson.dumps(row), key=trace_id.encode())
        producer.flush(10)
        stored = f"SELECT count() FROM llm_inferences WHERE inference_id = '{inference_id}'"
        assert wait_for(lambda: writer.sql(stored, key) == "1", timeout=30)

        feedback_url = f"{writer.api_url}/api/v1/metrics/inferences/{inference_id}/feedback"
        body = {"rating": 1, "comment": f"Awful. Mail {PII['EMAIL']}"}
        headers = {**_auth(key), "Idempotency-Key": "once"}
        first = httpx.post(feedback_url, json=body, headers=headers, timeout=30)
        assert first.status_code == 201, first.text
        assert first.json()["comment_sentiment"] < 0 and "<EMAIL>" in first.json()["comment"]
        assert httpx.post(feedback_url, json=body, headers=headers, timeout=30).status_code == 200
        assert httpx.get(feedback_url, headers=_auth(key), timeout=30).json()["summary"]["count"] == 1
        table = writer.sql("SELECT comment FROM feedback FINAL", key)
        assert "<EMAIL>" in table and PII["EMAIL"] not in table
    finally:
        writer.stop()
        del owner
