"""Broadcast: one sender, a contract of 1,000 recipients, 20 messages a minute.

The story. A customer orders a broadcast: one text to 1,000 recipients. The app stores
the contract (`contracts.py`) and adds it as one flow: a `contract` job waiting for 1,000
`send` jobs in `broadcast-messages`, a queue configured with
`limiter=corral.RateLimit(20, per=60)` because the WhatsApp sender may send no faster.
However many workers run, the store starts at most 20 sends in any minute, so the
contract takes 50 minutes; `contract_progress` reads from the flow how many were sent,
failed, withdrawn or are pending. When every message is done, the contract job runs and
marks the contract done. A recipient the provider refuses fails alone (`on_failure=
"ignore"`), and contracts sharing the sender take turns (each contract is a group).

Pausing a contract marks it paused and removes its pending messages (`remove_tagged
("contract:<id>")`); that releases the contract job, which records `paused` with the
counts. Stopping every process mid-contract loses nothing: the flow lives in the store,
and new workers carry on where the old ones stopped, each recipient sent exactly once
(a delivery row guards against a message job that runs twice).

Run `python -m examples.broadcast` for a short live story on a local SQLite file.
"""

from examples.broadcast.jobs import (
    CONTRACTS,
    MESSAGES,
    Progress,
    contract_progress,
    open_queue,
    pause_contract,
    run_story,
    setup,
    start_contract,
    workers,
)
from examples.broadcast.services import Services, WhatsApp, build_services

__all__ = [
    "CONTRACTS", "MESSAGES", "Progress", "Services", "WhatsApp", "build_services",
    "contract_progress", "open_queue", "pause_contract", "run_story", "setup",
    "start_contract", "workers",
]
