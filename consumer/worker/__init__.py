"""The worker's flow, by role: `wiring` (every collaborator built from Settings, lifetimes owned),
`consume_loop` (the group member: fetch, pause while busy, commit, rebalance, drain), `scheduler` (which job runs
when), `job_runner` (one job: span, memory admission, retries, its answer), `job_pipeline` (moderation, start image,
cache, render, encode, upload, result) and `video_encoding` (frames to MP4 and poster)."""
