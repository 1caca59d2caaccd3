"""Pagination and filters of `GET /v1/videos?limit=N&after=ID&order=desc|asc&status=S&metadata[KEY]=V&created_after=T`.
Pure.

Filters narrow the list before it is paged: `status` (`queued`, `in_progress`, `completed`, `failed`; repeated, any of
them), `metadata[KEY]=VALUE` (the job's request metadata holds KEY with exactly VALUE, e.g. `metadata[sku]=SKU-1`; up
to `MAX_METADATA_FILTERS`, all of them), `created_after` (Unix seconds, or an ISO 8601 date or date-time; a date or
a date-time without a zone is UTC): jobs created at or after it.

Jobs are listed newest first (`order=desc`, the default), ordered by (created_at, id) descending, or oldest first
(`asc`), so the order is total and stable while jobs are added: a page after job X holds the jobs strictly beyond X
in that order. The store fetches one row more
than asked, which tells whether there is a next page without counting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal, TypeVar

from multidict import MultiMapping

from consumer.core.intake import usable_id
from consumer.errors import QueryError

__all__ = [
    "DEFAULT_LIMIT",
    "LIST_FILTER_PARAMETERS",
    "LIST_STATUSES",
    "MAX_LIMIT",
    "MAX_METADATA_FILTERS",
    "Order",
    "PageQuery",
    "page",
    "parse_page_query",
]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_METADATA_FILTERS = 4
LIST_STATUSES: dict[str, tuple[str, ...]] = {
    "queued": ("queued",),
    "in_progress": ("in_progress",),
    "completed": ("completed",),
    "failed": ("failed", "rejected"),
}
"""A status of the job API's list filter and the view's statuses it means (the API answers `rejected` as `failed`)."""
LIST_FILTER_PARAMETERS: tuple[dict[str, object], ...] = (
    {
        "name": "status",
        "in": "query",
        "description": "Repeat for any of several.",
        "schema": {"type": "string", "enum": list(LIST_STATUSES)},
    },
    {
        "name": "metadata",
        "in": "query",
        "style": "deepObject",
        "explode": True,
        "description": "`metadata[KEY]=VALUE`: jobs whose metadata holds KEY with exactly VALUE (e.g. "
        f"`metadata[sku]=SKU-1`); up to {MAX_METADATA_FILTERS}, all must match.",
        "schema": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 512}},
    },
    {
        "name": "created_after",
        "in": "query",
        "description": "Jobs created at or after it: Unix seconds, or an ISO 8601 date or date-time (UTC without a "
        "zone).",
        "schema": {"type": "string"},
    },
)
"""The filters as OpenAPI parameters of `GET /v1/videos`."""
_METADATA = re.compile(r"^metadata\[(.{1,64})\]$", re.DOTALL)
T = TypeVar("T")


Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class PageQuery:
    limit: int
    after: str | None
    order: Order = "desc"
    statuses: tuple[str, ...] = ()  # the view's statuses to list (empty: every one)
    metadata: tuple[tuple[str, str], ...] = ()  # (key, value) pairs the job's metadata must hold
    created_after: float | None = None  # Unix seconds

    @property
    def fetch(self) -> int:
        """Rows to read: one more than the page, to learn whether another follows."""
        return self.limit + 1


def parse_page_query(query: Mapping[str, str]) -> PageQuery:
    """The page and filters a list query asks for; `query` may repeat `status` (a `MultiMapping`)."""
    raw_limit = query.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise QueryError("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(raw_limit)
    raw_after = query.get("after")
    after = None
    if raw_after is not None:
        after = usable_id(raw_after)
        if after is None:
            raise QueryError("after", "after must be the id of a job in the previous page")
    raw_order = query.get("order", "desc")
    if raw_order not in ("asc", "desc"):
        raise QueryError("order", "order must be asc or desc")
    return PageQuery(
        limit=limit,
        after=after,
        order="asc" if raw_order == "asc" else "desc",
        statuses=_statuses(_every(query, "status")),
        metadata=_metadata(query),
        created_after=_created_after(query.get("created_after")),
    )


def _every(query: Mapping[str, str], name: str) -> list[str]:
    if isinstance(query, MultiMapping):
        return list(query.getall(name, []))
    return [query[name]] if name in query else []


def _statuses(raw: list[str]) -> tuple[str, ...]:
    statuses: list[str] = []
    for value in raw:
        if value not in LIST_STATUSES:
            raise QueryError("status", f"status must be one of {', '.join(LIST_STATUSES)}")
        statuses.extend(name for name in LIST_STATUSES[value] if name not in statuses)
    return tuple(statuses)


def _metadata(query: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for name, value in query.items():
        if not name.startswith("metadata"):
            continue
        match = _METADATA.match(name)
        if match is None:
            raise QueryError("metadata", "filter on metadata as metadata[KEY]=VALUE, KEY 1 to 64 characters")
        if len(value) > 512:
            raise QueryError("metadata", "a metadata value is at most 512 characters")
        pairs.append((match.group(1), value))
    if len(pairs) > MAX_METADATA_FILTERS:
        raise QueryError("metadata", f"at most {MAX_METADATA_FILTERS} metadata filters")
    return tuple(pairs)


def _created_after(raw: str | None) -> float | None:
    if raw is None:
        return None
    if raw.isascii() and raw.isdigit() and len(raw) <= 12:
        return float(raw)
    try:
        moment = (
            datetime.fromisoformat(raw)
            if "T" in raw
            else datetime.combine(date.fromisoformat(raw), datetime.min.time())
        )
    except ValueError:
        moment = None
    if moment is None:
        raise QueryError("created_after", "created_after must be Unix seconds or an ISO 8601 date or date-time")
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def page(rows: Sequence[T], query: PageQuery) -> tuple[list[T], bool]:
    """The page and whether more follow, from up to `query.fetch` rows in list order."""
    return list(rows[: query.limit]), len(rows) > query.limit
