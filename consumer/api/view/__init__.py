"""The view of every job: the topics followed without a consumer group (`follower`), a job's state from its events
(`job_state`, pure), stored in SQLite (`database`), and paged (`pages`, pure)."""
