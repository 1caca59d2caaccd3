"""Kafka at the edge: `consume_loop` (the group member: fetch with partitions paused while busy, hand jobs to the
scheduler, commit the finished prefix, rebalances and drain), `clients` (clients and topics built from settings, and
how the producer measures a record), `publisher` (results, dead letters and retry-topic copies, each acknowledged) and
`progress` (best-effort progress events)."""
