"""Pagination of `GET /v1/videos?limit=N&after=ID&order=desc|asc`. Pure.

Jobs are listed newest first (`order=desc`, the default), ordered by (created_at, id) descending, or oldest first
(`asc`), so the order is total and stable while jobs are added: a page after job X holds the jobs strictly beyond X
in that order. The store fetches one row more
than asked, which tells whether there is a next page without counting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from consumer.core.intake import usable_id
from consumer.errors import QueryError

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Order", "PageQuery", "page", "parse_page_query"]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
T = TypeVar("T")


Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class PageQuery:
    limit: int
    after: str | None
    order: Order = "desc"

    @property
    def fetch(self) -> int:
        """Rows to read: one more than the page, to learn whether another follows."""
        return self.limit + 1


def parse_page_query(query: Mapping[str, str]) -> PageQuery:
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
    return PageQuery(limit=limit, after=after, order="asc" if raw_order == "asc" else "desc")


def page(rows: Sequence[T], query: PageQuery) -> tuple[list[T], bool]:
    """The page and whether more follow, from up to `query.fetch` rows in list order."""
    return list(rows[: query.limit]), len(rows) > query.limit
