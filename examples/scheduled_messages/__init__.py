"""Scheduled messages: a WhatsApp outreach app's background work on corral.

The story. Sales people plan WhatsApp messages to their leads ("send this Tuesday at
9:00"); the app keeps them in its own table (`outbox.py`), where they can still be edited
or cancelled. Every minute the schedule `process-due` turns the messages that have come due
into one `sendMessage` job each (job id `send:<message id>`, so a repeated tick adds
nothing); a message whose three attempts fail is marked failed. Every five minutes
`health-check` probes the provider and counts messages left pending. Checking whether
leads are on WhatsApp answers up to ten leads in the request and queues a job that carries
only the ids of more. Each sent message asks for a CRM sync of its lead, debounced to one
sync 30 s after the last message. When the job store cannot be reached, `add` fails fast
with `corral.BackendUnavailableError` and `schedule_or_run_inline` does the work in the
request instead, and logs that it did.

The HTTP surface (`web.py`) is corral's own API mounted at `/queues` (stats, add a job,
health, Prometheus metrics, dashboard) plus the app's `POST /schedules/initialize` and
`POST /leads/availability`.

Run `python -m examples.scheduled_messages` for a short live story on a local SQLite file.
"""

from examples.scheduled_messages.jobs import (
    QUEUE,
    check_availability,
    request_crm_sync,
    run_story,
    schedule_message,
    schedule_or_run_inline,
    setup,
    workers,
)
from examples.scheduled_messages.services import Crm, Services, WhatsApp, build_services

__all__ = [
    "QUEUE", "Crm", "Services", "WhatsApp", "build_services", "check_availability",
    "request_crm_sync", "run_story", "schedule_message", "schedule_or_run_inline", "setup",
    "workers",
]
