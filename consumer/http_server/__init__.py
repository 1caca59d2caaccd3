"""What every HTTP server of the project shares (the product hook, the job API): `limits` bounds slow clients and open
connections. The worker's own probes are telemetry (`consumer/http_server/health_routes.py`)."""
