"""A new job at the edge: its body (`body`), its uploaded start image (`uploads`), its id (`job_ids`), how long it
would wait (`wait_estimate`) and whether the GPU pool takes it (`shedding`)."""
