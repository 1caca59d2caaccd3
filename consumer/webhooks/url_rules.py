"""The outbound rules of webhook URLs: the start-image fetcher's SSRF rules (`consumer.images.https_download`: https
only, no credentials, public addresses only unless the host is allowed to be internal), worded for webhooks. The job
API applies them when a tenant creates an endpoint, the notifier before every delivery."""

from __future__ import annotations

from consumer.errors import WebhookUnresolved, WebhookUrlForbidden
from consumer.images.url_vetting import IPNetwork, UrlRules

__all__ = ["webhook_rules"]


def webhook_rules(
    *, timeout_s: float, internal_hosts: tuple[str, ...], trusted_networks: tuple[IPNetwork, ...] = (), subject: str
) -> UrlRules:
    """Rules for webhook URLs; `subject` names the URL in refusals (`url` for the API, `webhook url` in logs)."""
    return UrlRules(
        resolve_timeout_s=timeout_s,
        internal_hosts=internal_hosts,
        trusted_networks=trusted_networks,
        subject=subject,
        forbidden=WebhookUrlForbidden,
        unresolved=WebhookUnresolved,
    )
