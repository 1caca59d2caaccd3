"""The view of every job: the topics followed without a consumer group (`follower`), a job's state from its events
(`job_state`, pure), stored in SQLite (`schema`: the file; `database`: the rows; `job_store`: the async front with
what it keeps in memory), the queue figures per pool, lane and tenant (`queue_counts`, pure), the per-tenant cap on
the jobs kept (`retention`), and paged (`pages`, pure)."""
