"""Lead funnel: nudge new sign-ups towards the chat bot, and remind them of their lesson.

The story. Someone signs up on the school's site. If they have not started the chat bot
30 minutes later, they get email1; a day later email2; a day after that the CRM marks
them CALL_NEEDED and the managers' group gets a message to call them. Starting the bot
at any point cancels whatever of that chain is still pending, at once.

A lead who books a trial lesson gets a reminder 24 h before it (when the lesson is more
than 24 h away) and another 5 h before, each with links to confirm or reschedule.
Confirming cancels the reminders still to come; rescheduling moves them.

A failed step is tried again 1 min, 5 min and 15 min later (`attempts=4` counts every
try, as in BullMQ, so three retries need four attempts). The queue keeps the last 100
completed and 200 failed jobs.

Entry points, each working with any store URL and clock:

- `setup(queue)` stores the retry and retention policy with the queue `QUEUE`;
- `run_story(url, clock, log)` does what the web app does in the story, and returns;
- `workers(url, clock, log)` builds the workers that play the story out.

`python -m examples.lead_funnel` runs the story on local SQLite files in a few seconds.
"""

from .app import MANAGERS_CHAT, POLICY, QUEUE, Funnel, run_story, setup, workers
from .services import ChatBot, Crm, Mailer, Services, services
from .store import Database

__all__ = [
    "MANAGERS_CHAT",
    "POLICY",
    "QUEUE",
    "ChatBot",
    "Crm",
    "Database",
    "Funnel",
    "Mailer",
    "Services",
    "run_story",
    "services",
    "setup",
    "workers",
]
