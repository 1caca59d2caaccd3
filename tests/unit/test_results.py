"""Result events built from outcomes."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer.core.intake import Rejection
from consumer.core.results import Identity, failed, rejected
from consumer.errors import ImageUrlForbidden, InvalidRequest, StorageError
from schemas.events import Timings, VideoRequest

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ME = Identity(worker_id="w1", model="tiny")
REQUEST = VideoRequest(request_id="r1", tenant_id="t1", prompt="p", metadata={"k": "v"})


def test_processing_failure_is_failed_and_retryable() -> None:
    result = failed(
        REQUEST, StorageError("S3 said 503"), timings=Timings(received_at=NOW, completed_at=NOW), attempt=2, identity=ME
    )
    assert result.status == "failed"
    assert result.error is not None and (result.error.code, result.error.retryable) == ("storage_unavailable", True)
    assert (result.attempt, result.worker_id, result.metadata) == (2, "w1", {"k": "v"})


def test_request_fault_found_late_is_rejected() -> None:
    result = failed(
        REQUEST, ImageUrlForbidden("no"), timings=Timings(received_at=NOW, completed_at=NOW), attempt=1, identity=ME
    )
    assert result.status == "rejected"
    assert result.error is not None and result.error.retryable is False


def test_rejection_names_the_field() -> None:
    rejection = Rejection("r1", None, {}, InvalidRequest("width: bad", code="invalid_field", field="width"))
    result = rejected(rejection, received_at=NOW, identity=ME)
    assert result.status == "rejected" and result.tenant_id is None
    assert result.error is not None and (result.error.code, result.error.field) == ("invalid_field", "width")
    assert result.video is None and result.cache_hit is False
