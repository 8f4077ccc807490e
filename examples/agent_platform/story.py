"""A few minutes in the life of the platform, for `corral demo`: only adds jobs, returns at once."""

from __future__ import annotations

from corral.clock import Clock
from examples.agent_platform.jobs import Producer
from examples.standins import CallLog

__all__ = ["run_story"]

HANDBOOK = "Expenses are reimbursed within 30 days. " * 60


async def run_story(url: str, clock: Clock, log: CallLog) -> None:
    """Upload documents, publish agent events and send a welcome email; the workers do the rest.

    What happens next: acme's handbook is refused twice by the embedding API and indexed on
    the third attempt (2 s, then 8 s later); every indexed document sends a `document.ready`
    webhook and an email; globex's webhook endpoint is down, so its deliveries fail five
    times (5, 10, 20, 40 s apart) and end in `failed`; globex's mail server greylists the
    first two deliveries to it, which go through when retried 10 s later. Each step of the
    story is noted in `log` as service `story`.
    """
    async with Producer(url, clock) as producer:
        for workspace, document_id, title, text in (
            ("acme", "handbook", "Employee handbook", HANDBOOK),
            ("acme", "pricing", "Pricing FAQ", "Plans start at 20 EUR a month."),
            ("globex", "runbook", "On-call runbook", "Restart the agent pool, then page."),
        ):
            await producer.submit_document(workspace, document_id, title, text)
            log.record("story", "upload", workspace=workspace, document_id=document_id)
        for workspace in ("acme", "globex"):
            run = {"agent": "support-bot", "status": "succeeded"}
            await producer.publish_event(workspace, "agent.run.completed", run)
            log.record("story", "event", workspace=workspace, type="agent.run.completed")
        await producer.send_email("ops@globex.test", "Welcome to the platform",
                                  "Your workspace is ready.")
        log.record("story", "email", to="ops@globex.test")
