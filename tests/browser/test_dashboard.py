"""The dashboard in real headless Chromium: log in, retry a failed job, pause and resume.

Each test drives the pages as a user would and waits on what the page shows (Playwright's
`expect` retries until its timeout), never on fixed sleeps.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from corral.web.app import create_app
from tests.browser.conftest import (
    ARTIFACTS,
    FLAKY_ID,
    LONG_ID,
    QUEUE,
    LiveServer,
    Store,
    log_in,
)

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import Page, expect

REFRESH_WAIT = 15_000
"""ms to wait for something the page shows after its next auto-refresh (every 3 s)."""


def _no_sideways_scroll(page: Page) -> None:
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"{page.url} scrolls sideways: {widths}"


def test_log_in_retry_a_failed_job_pause_and_resume(server: LiveServer, page: Page) -> None:
    base = server.base
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login")
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("not right")
    page.fill("input[name=token]", "browser-test-token")
    page.click("button[type=submit]")
    expect(page).to_have_url(base + "/")

    row = page.locator(f"tr[data-queue={QUEUE}]")
    expect(row).to_be_visible()
    row.get_by_role("link", name=QUEUE).click()
    page.locator("a.tab[data-state=failed]").click()
    expect(page).to_have_url(re.compile(r"state=failed"))
    page.locator(f"tr[data-job-id='{FLAKY_ID}'] a").first.click()

    expect(page.locator("#job")).to_have_attribute("data-state", "failed")
    expect(page.locator(".reason")).to_contain_text("SMTP server said 421")
    page.get_by_role("button", name="Retry").click()
    # The worker runs the job again; the page shows it complete on a refresh of its own.
    expect(page.locator("#job")).to_have_attribute("data-state", "completed", timeout=REFRESH_WAIT)
    expect(page.get_by_text('"delivered": true')).to_be_visible()

    page.locator(".crumbs").get_by_role("link", name=QUEUE).click()
    expect(page).to_have_url(f"{base}/queues/{QUEUE}")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#queue-head .badge.paused")).to_have_text("paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#queue-head .badge.paused")).to_have_count(0)
    expect(page.get_by_role("button", name="Pause")).to_be_visible()

    page.locator("a.tab[data-state=completed]").click()
    expect(page.locator(f"tr[data-job-id='{FLAKY_ID}']")).to_be_visible()
    page.locator(".toast").evaluate_all("toasts => toasts.forEach(t => t.remove())")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-queue.png"), full_page=True)


def test_search_and_tab_survive_auto_refresh(server: LiveServer, page: Page) -> None:
    log_in(page, server.base)
    page.goto(f"{server.base}/queues/{QUEUE}?state=completed")
    page.fill("input[name=q]", "user7@")
    page.press("input[name=q]", "Enter")
    expect(page).to_have_url(re.compile(r"state=completed.*q=user7|q=user7.*state=completed"))
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 300)")
    with page.expect_request(lambda request: request.headers.get("x-corral-refresh") == "1"):
        pass  # the page's own refresh, a few seconds later
    page.wait_for_load_state("networkidle")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator("input[name=q]")).to_have_value("user7@")
    expect(page.locator("a.tab[data-state=completed]")).to_have_attribute("aria-current", "page")
    assert page.evaluate("window.scrollY") > 0


def test_add_a_job_from_the_form(server: LiveServer, page: Page) -> None:
    log_in(page, server.base)
    page.goto(f"{server.base}/queues/{QUEUE}?state=completed")
    page.get_by_role("button", name="Add job…").click()
    dialog = page.locator("#add-dialog")
    dialog.locator("input[name=name]").fill("send")
    dialog.locator("input[name='options.job_id']").fill("from-the-form")
    dialog.locator("textarea[name=data]").fill('{"to": "form@example.com"}')
    dialog.get_by_role("button", name="Add job").click()
    expect(page.locator(".toast")).to_contain_text("Job added")
    expect(page.locator("tr[data-job-id='from-the-form']")).to_be_visible(timeout=REFRESH_WAIT)


def test_no_sideways_scroll_on_a_laptop_screen(server: LiveServer, page: Page) -> None:
    log_in(page, server.base)
    _no_sideways_scroll(page)
    for state in ("waiting", "delayed", "completed", "failed"):
        page.goto(f"{server.base}/queues/{QUEUE}?state={state}")
        _no_sideways_scroll(page)
    for job_id in (LONG_ID, FLAKY_ID):
        page.goto(f"{server.base}/queues/{QUEUE}/jobs/{quote(job_id, safe='')}")
        expect(page.locator("#job")).to_be_visible()
        _no_sideways_scroll(page)


def test_read_only_mode_hides_every_action(store: Store, page: Page) -> None:
    # Mounted under a prefix, as users embed it: every link must keep the prefix.
    from fastapi import FastAPI

    parent = FastAPI()
    parent.mount("/admin/queues", create_app(store.url, read_only=True))
    with LiveServer(parent) as live:
        base = live.base + "/admin/queues"
        page.goto(base + "/")
        expect(page.locator(".badge.ro")).to_have_text("read-only")
        page.locator(f"tr[data-queue={QUEUE}]").get_by_role("link", name=QUEUE).click()
        expect(page).to_have_url(f"{base}/queues/{QUEUE}")
        expect(page.locator("#jobs-card")).to_be_visible()
        assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("system-ui")
        for label in ("Pause", "Resume", "Retry all failed", "Clean…", "Add job…", "Remove"):
            expect(page.get_by_role("button", name=label)).to_have_count(0)
        expect(page.locator("[data-api]")).to_have_count(0)
        page.locator("a.tab[data-state=delayed]").click()
        page.locator("tr[data-job-id='later-1'] a").click()
        expect(page.locator("#job")).to_have_attribute("data-state", "delayed")
        expect(page.locator("[data-api]")).to_have_count(0)
        expect(page.get_by_role("button", name="Promote")).to_have_count(0)
