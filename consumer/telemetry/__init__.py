"""What the worker tells operators: logs (`logs`), metrics (`metrics`), traces (`tracing`, exported by `otlp`) and the
HTTP probes (`probes`: /healthz, /readyz, /metrics). Only the entry point (`consumer/cli.py`) configures logging and
tracing; library code only asks for loggers and tracers."""
