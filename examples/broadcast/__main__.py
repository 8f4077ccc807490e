"""`python -m examples.broadcast`: two contracts share one sender; one is paused.

Runs on a SQLite file in a temporary folder with a clock 120 times faster than real time
(a virtual minute every half second) and prints each contract's progress every minute.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import corral
from corral.testing import FastClock
from examples.broadcast.jobs import (
    CONTRACTS,
    MESSAGES,
    contract_progress,
    open_queue,
    pause_contract,
    setup,
    start_contract,
    workers,
)
from examples.broadcast.services import build_services
from examples.standins import CallLog

SPEED = 120


async def main(folder: Path) -> None:
    url = f"sqlite:///{folder}/corral.db"
    clock = FastClock(SPEED)
    log = CallLog(folder / "calls.db", clock)
    services = build_services(log, clock)
    await setup(url, clock)
    async with open_queue(CONTRACTS, url, clock) as contracts, \
            open_queue(MESSAGES, url, clock) as messages:
        await start_contract(contracts, services, "spring", "Spring sale: 20% off",
                             [f"+4917000{n:05d}" for n in range(80)])
        await start_contract(contracts, services, "survey", "How did we do?",
                             [f"+4917100{n:05d}" for n in range(40)])
        running = workers(url, clock, log, lock_duration=SPEED * 5)
        task = asyncio.create_task(corral.run_workers(running))
        for minute in range(1, 7):
            await asyncio.sleep(60 / SPEED)
            if minute == 2:
                withdrawn = await pause_contract(messages, services, "survey")
                print(f"minute {minute}: paused 'survey', {withdrawn} messages withdrawn")
            for contract_id in ("spring", "survey"):
                progress = await contract_progress(contracts, contract_id)
                status = services.contracts.get(contract_id).status
                print(f"minute {minute}: {contract_id:6} {status:7} {progress.to_json()}")
        for worker in running:
            await worker.close(timeout=5)
        await task
    print(f"{len(log.calls('whatsapp', 'send'))} messages sent in all")
    log.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="corral-broadcast-") as folder:
        asyncio.run(main(Path(folder)))
