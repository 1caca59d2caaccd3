"""Cancelling a request: the commands of the control topic indexed for the worker's lookups (`commands`, pure).
The worker follows the topic in `consumer.kafka.state_topics`; the scheduler applies a cancel to its job."""
