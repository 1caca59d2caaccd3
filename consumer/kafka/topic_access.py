"""Who reads and writes which Kafka topic: every component of the project, from the same settings the components
themselves are built from (no I/O: it reads the settings only). `consumer/dev/acl_docs.py` renders it as the
security page's ACL table and its literal `kafka-acls.sh` commands whenever the docs site is built; tests check it
against the code and against what each component sends a broker.

Every internal topic shares the requests topic's prefix (`video.requests.retry`, `.attempts`, `.dlq`, `.bulk`,
`.template`), so a *prefixed* ACL on a topic a producer writes grants it the internal topics too:
`prefixed_grant_leaks` names them.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.settings import Settings
from consumer.settings.pools import worker_settings

__all__ = ["ComponentAccess", "prefixed_grant_leaks", "topic_access", "worker_topics"]


@dataclass(frozen=True)
class ComponentAccess:
    """What one component does on the brokers. `reads`: topics it fetches; `writes`: topics it produces to;
    `groups`: consumer groups it joins or commits in; `watches` and `watched_groups`: topics whose offsets, and
    groups whose commits, it only reads (Describe); `creates`: topics it creates with `VIDGEN_CREATE_TOPICS=true`."""

    name: str
    command: str
    principal: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    watches: tuple[str, ...] = ()
    watched_groups: tuple[str, ...] = ()
    creates: tuple[str, ...] = ()
    note: str = ""

    @property
    def topics(self) -> frozenset[str]:
        return frozenset((*self.reads, *self.writes, *self.watches))


def worker_topics(settings: Settings) -> list[str]:
    """Every topic a worker reads or writes: what it creates at start-up with `VIDGEN_CREATE_TOPICS=true`."""
    topics = [
        settings.requests_topic,
        settings.bulk_topic,
        settings.retry_topic,
        settings.results_topic,
        settings.dlq_topic,
        settings.control_topic,
        settings.attempts_topic,
    ]
    return [*topics, settings.progress_topic] if settings.progress_events else topics


def _worker(settings: Settings, name: str, principal: str) -> ComponentAccess:
    """A worker of either pool (`consumer/worker/`, `consumer/kafka/`): its three input topics in its group, the
    control and crash-guard topics followed without a group; results, DLQ copies, retry-topic copies, crash-guard
    counts and progress written."""
    progress = (settings.progress_topic,) if settings.progress_events else ()
    return ComponentAccess(
        name=name,
        command="vidgen run" if settings.model != "template" else "VIDGEN_MODEL=template vidgen run",
        principal=principal,
        reads=(
            settings.requests_topic,
            settings.bulk_topic,
            settings.retry_topic,
            settings.control_topic,
            settings.attempts_topic,
        ),
        writes=(settings.results_topic, settings.dlq_topic, settings.retry_topic, settings.attempts_topic, *progress),
        groups=(settings.consumer_group,),
        creates=tuple(worker_topics(settings)),
    )


def topic_access(settings: Settings, *, notifier_group: str, notifier_dlq_topic: str) -> tuple[ComponentAccess, ...]:
    """Every component's access, for the GPU pool `settings` describe and the template pool beside it (the notifier's
    group and DLQ topic come from its own `VIDGEN_NOTIFIER_*` settings)."""
    gpu = worker_settings(settings.model_copy(update={"model": "tiny"}) if settings.model == "template" else settings)
    template = worker_settings(gpu.template_pool())
    lanes = (gpu.requests_topic, gpu.bulk_topic)
    view = (*lanes, gpu.template_topic, gpu.progress_topic, gpu.results_topic, gpu.control_topic)
    return (
        _worker(gpu, "GPU worker pool", "User:vidgen-worker"),
        _worker(template, "Template worker pool", "User:vidgen-template"),
        ComponentAccess(
            name="Job API",
            command="vidgen api",
            principal="User:vidgen-api",
            reads=(*view, gpu.webhooks_topic),
            writes=(*lanes, gpu.template_topic, gpu.control_topic, gpu.webhooks_topic),
            creates=tuple(dict.fromkeys([*worker_topics(gpu), *view, gpu.webhooks_topic])),
            note="reads without a consumer group (its view assigns every partition, the tenants' webhook endpoints "
            "too); writes each job to its lane or, degraded, to the template topic, cancels to the control topic, "
            "and tenants' webhook endpoints to the webhooks topic",
        ),
        ComponentAccess(
            name="Job API, similar fallback",
            command="vidgen api",
            principal="User:vidgen-api",
            writes=(gpu.results_topic,),
            creates=(gpu.results_topic,),
            note="besides the row above: answers a job that asks `fallback: similar` (per request, or a tenant's or "
            "the service's default) at once with an earlier video of the same photo, writing that result to the "
            "results topic itself. A results writer can answer any request; without this grant such a job gets "
            "the API's publish error (503) instead of the earlier video, and everything else works",
        ),
        ComponentAccess(
            name="Product hook",
            command="python -m producer_examples.product_hook",
            principal="User:vidgen-hook",
            writes=(*lanes, gpu.template_topic),
            watches=lanes,
            watched_groups=(gpu.consumer_group,),
            creates=(*lanes, gpu.template_topic),
            note="writes the lane of VIDGEN_HOOK_PRIORITY (grant only that one) or, degraded, the template topic; "
            "reads the GPU pool's committed offsets without joining its group",
        ),
        ComponentAccess(
            name="Product hook, similar fallback",
            command="python -m producer_examples.product_hook",
            principal="User:vidgen-hook",
            reads=(gpu.results_topic, gpu.control_topic),
            writes=(gpu.results_topic,),
            creates=(gpu.results_topic, gpu.control_topic),
            note="only where VIDGEN_HOOK_FALLBACK or a shop's VIDGEN_HOOK_SHOP_FALLBACK is `similar`, besides the row "
            "above: follows the results and control topics without a group (its index of product videos) and "
            "writes its own answers to the results topic. A results writer can answer any request: grant it only "
            "where the fallback is wanted",
        ),
        ComponentAccess(
            name="Notifier",
            command="python -m producer_examples.notifier",
            principal="User:vidgen-notifier",
            reads=(gpu.results_topic, gpu.progress_topic, gpu.webhooks_topic),
            writes=(notifier_dlq_topic,),
            groups=(notifier_group,),
            creates=(gpu.results_topic, notifier_dlq_topic, gpu.webhooks_topic, gpu.progress_topic),
            note="with tenant webhooks on (VIDGEN_WEBHOOK_SECRETS_KEY): follows the webhooks topic without a group "
            "and reads progress for `video.progress` deliveries; without, only results",
        ),
        ComponentAccess(
            name="Operator: submit and watch",
            command="vidgen submit [--wait], vidgen watch",
            principal="User:vidgen-operator",
            reads=(gpu.results_topic, gpu.progress_topic),
            writes=lanes,
            creates=(*lanes, gpu.results_topic),
            note="writes the lane of --priority; reads results and progress only with --wait and in `vidgen watch`, "
            "without a consumer group",
        ),
        ComponentAccess(
            name="Operator: cancel",
            command="vidgen cancel",
            principal="User:vidgen-operator",
            writes=(gpu.control_topic,),
            creates=(gpu.control_topic,),
        ),
        ComponentAccess(
            name="KEDA autoscaler",
            command="deploy/k8s ScaledObjects",
            principal="User:keda",
            watches=(*lanes, template.requests_topic),
            watched_groups=(gpu.consumer_group, template.consumer_group),
            note="reads the pools' lag: end offsets and committed offsets only",
        ),
    )


def prefixed_grant_leaks(access: tuple[ComponentAccess, ...]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per component, for each topic it writes, the topics a prefixed Write ACL on that name would also let it
    write though it never does: what a shortcut such as `--resource-pattern-type prefixed --topic video.requests`
    hands an upstream producer (crash-guard counts, retry state, dead letters...)."""
    every = sorted({topic for component in access for topic in component.topics})
    leaks: dict[str, dict[str, tuple[str, ...]]] = {}
    for component in access:
        for topic in component.writes:
            extra = tuple(
                name for name in every if name != topic and name.startswith(topic) and name not in component.writes
            )
            if extra:
                leaks.setdefault(component.name, {})[topic] = extra
    return leaks
