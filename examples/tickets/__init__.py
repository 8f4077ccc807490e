"""Tickets: close a help-desk ticket automatically when the customer stops answering.

The story. An agent thinks a ticket is solved and asks the customer; unless they answer
within N hours, the ticket closes by itself and the customer gets an email saying so.
The customer saying "no, not solved", or writing anything at all, cancels the pending
auto-close. Some tickets (an important customer's) are excluded from auto-close and are
never closed automatically, whatever jobs exist. Each ticket has at most one pending
auto-close (a unique job id), and at start-up the help desk removes the jobs of tickets
that were deleted meanwhile.

Entry points, each working with any store URL and clock:

- `setup(queue)` stores the retry and retention policy with the queue `QUEUE`;
- `run_story(url, clock, log)` does what the help desk does in the story, and returns;
- `workers(url, clock, log)` builds the workers that play the story out.

`python -m examples.tickets` runs the story on local SQLite files in a few seconds.
"""

from .app import POLICY, QUEUE, Tickets, run_story, setup, workers
from .services import Mailer, Services, services
from .store import Database, Ticket

__all__ = [
    "POLICY",
    "QUEUE",
    "Database",
    "Mailer",
    "Services",
    "Ticket",
    "Tickets",
    "run_story",
    "services",
    "setup",
    "workers",
]
