"""The HTTP surface: the aiohttp application and its middlewares (`application`), the `/v1/videos` endpoints
(`videos`), server-sent events (`event_streams`), a job as JSON (`job_body`), errors as JSON (`error_answers`) and
the OpenAPI document (`openapi`)."""
