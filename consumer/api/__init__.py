"""The job API: HTTP in front of the topics for callers that cannot speak Kafka.

It publishes requests (and cancels) and answers from a view it materialises from `video.requests`,
`video.progress`, `video.results` and `video.control` into SQLite, so it holds no state that Kafka does not.

Pure: `jobs` (state transitions from events), `shedding`, `ids`, `claims`, `cursors`. I/O: `store` (SQLite),
`view` (the group-less consumer), `auth`, `api_keys`, `uploads`, `publishing`; HTTP: `errors`, `handlers`,
`events_stream`, `http_app`; wiring: `server`.
"""
