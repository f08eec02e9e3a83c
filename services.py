"""The long-lived parts of the service, built from Settings in one place and shared by the web app,
the embedded consumer and the CLI."""

from dataclasses import dataclass

import operations
from clock import Clock, utcnow
from config import Settings
from handlers import Registry, build_registry
from inbox import Inbox
from optipick_client import OptiPickClient
from processing import Processor, RetryPolicy
from work_queue import WorkQueue, create_huey


@dataclass
class Services:
    settings: Settings
    inbox: Inbox
    queue: WorkQueue
    client: OptiPickClient
    registry: Registry
    processor: Processor

    @classmethod
    def build(cls, settings: Settings, clock: Clock = utcnow) -> "Services":
        """Open everything the web side and the workers use. A SQLite queue file that cannot be used is
        moved aside and made again (the queue is disposable; the inbox is the truth)."""
        inbox = Inbox.open(settings.database_url, clock)
        queue = WorkQueue(create_huey(settings.queue_url, repair=True))
        client = OptiPickClient(
            settings.optipick_api_url,
            settings.optipick_api_key,
            max_result_bytes=settings.max_result_bytes,
            connections=settings.worker_threads,
        )
        registry = build_registry(settings)
        processor = Processor(
            inbox,
            client,
            registry,
            queue.enqueue,
            policy=RetryPolicy(max_attempts=settings.max_attempts),
            lease_seconds=settings.lease_seconds,
            clock=clock,
        )
        pruner = None
        if settings.prune_after_days is not None:
            days = settings.prune_after_days
            pruner = lambda: operations.prune(inbox, days)  # noqa: E731 -- a one-line closure reads best here
        queue.attach(processor, pruner)
        return cls(settings, inbox, queue, client, registry, processor)

    def close(self) -> None:
        self.client.close()
        self.queue.close()
        self.inbox.close()
