"""The pure core: what the worker decides, with no Kafka, S3, GPU or image library in it.

Parsing and validating a record (`intake`, `sanitize`), the content policy (`moderation`), object and cache keys
(`keys`), result events and their timings (`results`), how big events may get (`event_bounds`) and dead-letter copies
(`dlq`), which offsets may be committed (`offsets`), job slots by stage (`slots`), tenant quotas and the fair queue
(`quotas`, `pending`), retry decisions and the retry state in headers (`retries`), the job (`job`) and the clocks
(`clock`). Everything here is unit-tested alone;
`tests/unit/test_purity.py` proves no I/O library is imported.
"""
