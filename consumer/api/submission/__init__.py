"""A new job at the edge: its body (`body`), its uploaded start image (`uploads`), its id (`job_ids`), and whether
the GPU pool can take it (`shedding`)."""
