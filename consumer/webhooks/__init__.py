"""Tenant webhook endpoints, shared by the job API (which manages them) and the notifier (which delivers to them):
the rules a URL must pass (`url_rules`), the encryption of signing secrets (`secret_box`), and the in-memory
directory of endpoints (`directory`) that `follower` keeps in step with the compacted webhooks topic."""
