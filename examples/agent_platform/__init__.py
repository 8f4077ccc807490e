"""An AI agent platform: knowledge ingestion, webhooks, usage rollups, credits and email.

Customers (workspaces) upload documents, which are chunked and embedded into a knowledge
base (`ingest`: the embedding API sheds load, so 3 retries, 2, 8 and 32 s later). Whatever
happens in a workspace — a document is ready, an agent run finished — is POSTed to the
customer's webhook (`webhooks`: endpoints go down, so 5 attempts, 5, 10, 20, 40 s apart, then
`failed`, the dead-letter queue). Every night at 02:00 UTC the day's usage is rolled up
(`rollup`), and on the 1st of each month at 00:05 UTC every workspace is granted its credits
(`credits`). Owners hear about it by email (`email`: greylisting mail servers ask us to come
back, so 3 attempts 10 s apart; 10 at a time).

Every outside service is a stand-in that records its calls (`services.py`); real clients
plug in at `build_services`.

Run it from the repository root, in two terminals:

    corral worker examples.agent_platform.worker:start --url sqlite:///agent.db
    uvicorn examples.agent_platform.web:app

The first process stores the queues' settings and the two schedules, then runs all five
workers; add `--processes 4` for more (each process upserts the same schedules, which
changes nothing, and each tick still fires once). The second serves `POST /documents`,
`POST /events` and corral's dashboard at http://127.0.0.1:8000/admin/queues/ over the same
store (`CORRAL_URL`, default `sqlite:///agent.db`; set `CORRAL_TOKEN` to protect the
dashboard). The stand-ins' calls land in `agent-platform-calls.db`
(`$AGENT_PLATFORM_CALLS`).

    curl -X POST localhost:8000/documents -H 'content-type: application/json' \\
         -d '{"workspace": "acme", "document_id": "handbook", "title": "Handbook", "text": "..."}'
"""

from examples.agent_platform.jobs import setup, workers
from examples.agent_platform.story import run_story

__all__ = ["run_story", "setup", "workers"]
