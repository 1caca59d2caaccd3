"""The one error root, `VidgenError`: a stable `code`, whether trying again may help (`retriable`), whether the
request itself is at fault (`rejects`), and whether the code can land in a result event (`in_results`)."""

from __future__ import annotations

from typing import ClassVar

__all__ = ["VidgenError"]


class VidgenError(Exception):
    """Root of every error of the project: those the worker turns into a result event, and those answered elsewhere
    (an HTTP answer of the job API, a notifier's DLQ record, a command line's exit status).

    `code` is stable snake_case and lands in `error.code`; `retriable` says whether trying again may help.
    `rejects` marks errors in the request itself: the result status is `rejected`, never `failed`.
    `in_results` says whether the code can reach a result event (or a start-up / CLI exit, listed in the same
    table); errors answered only by the job API, the notifier or a producer example say False and are documented in
    their own tables.
    """

    code: ClassVar[str] = "internal_error"
    retriable: ClassVar[bool] = False
    rejects: ClassVar[bool] = False
    in_results: ClassVar[bool] = True

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field  # the request field at fault, when there is one
        if code is not None:
            self.code = code  # type: ignore[misc]  # instance override of the class default
