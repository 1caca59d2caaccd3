"""How many jobs the view keeps per tenant (`VIDGEN_API_TENANT_MAX_JOBS`), so that one tenant cannot fill a
replica's disk: once a tenant has more, its terminal jobs go, the least recently updated first (the answer that has
been there longest). A queued or rendering job never goes, so a tenant with more active jobs than the cap keeps
those, and only those. Jobs of every tenant still leave after `VIDGEN_API_RETENTION_S` (`ViewDatabase.purge`).

The cap is enforced when a tenant's jobs are added and at every purge, not when a job ends: a job that has just
ended may still have a progress event on its way, which would bring it back as a job in progress with no request.

The jobs per tenant are counted once when the file opens and kept current after, so the cap costs no count per
write; the rows to delete come from the partial index of terminal jobs by tenant.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable

from consumer.api.view.schema import TERMINAL_ROWS

__all__ = ["TenantCap"]

_OLDEST_TERMINAL = (
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE tenant_id = ? AND "  # noqa: S608 - a constant condition
    f"{TERMINAL_ROWS} ORDER BY updated_at, id LIMIT ?) RETURNING id"
)


class TenantCap:
    """The jobs each tenant has in the view and the cap on them (None: no cap). Used on the view's thread, inside
    the transaction that changes the rows; `recount` after a rollback."""

    def __init__(self, db: sqlite3.Connection, max_jobs: int | None) -> None:
        self._db = db
        self.max_jobs = max_jobs
        self.jobs: Counter[str] = Counter()
        self.recount()

    def recount(self) -> None:
        self.jobs = Counter(dict(self._db.execute("SELECT tenant_id, COUNT(*) FROM jobs GROUP BY tenant_id")))

    def added(self, tenant: str) -> None:
        self.jobs[tenant] += 1

    def removed(self, tenants: Iterable[str]) -> None:
        """Rows of these tenants (one per item) were deleted."""
        self.jobs.subtract(tenants)
        for tenant in [name for name, count in self.jobs.items() if count <= 0]:
            del self.jobs[tenant]

    def enforce(self, tenants: Iterable[str] | None = None) -> list[str]:
        """Delete the terminal jobs that take these tenants (None: every one) over the cap; their ids."""
        if self.max_jobs is None:
            return []
        deleted: list[str] = []
        for tenant in list(self.jobs) if tenants is None else set(tenants):
            excess = self.jobs[tenant] - self.max_jobs
            if excess > 0:
                ids = [job_id for (job_id,) in self._db.execute(_OLDEST_TERMINAL, (tenant, excess)).fetchall()]
                self.removed([tenant] * len(ids))
                deleted.extend(ids)
        return deleted
