"""The job API: HTTP in front of the topics for callers that cannot speak Kafka.

It publishes requests (and cancels) and answers from a view it materialises from `video.requests`,
`video.progress`, `video.results` and `video.control` into SQLite, so it holds no state that Kafka does not.

Pure: `jobs` (state transitions from events), `shedding`, `ids`, `claims`, `cursors`, `uploads` (header checks),
`submission.build_request`, `links` (content link tokens). I/O: `store` (SQLite), `view` (the group-less consumer),
`auth` and `api_keys`, `publishing`. HTTP: `errors`, `handlers`, `events_stream`, `content_links`, `rendering`,
`http_app`, `openapi`, and `console` (the web console at `/`: static files, security headers). Wiring: `settings`,
`metrics`, `server`, `cli`.
"""
