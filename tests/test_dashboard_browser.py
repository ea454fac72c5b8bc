"""The dashboard in a real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import DaemonFactory, Receiver
from test_daemon_e2e import config

CHROMIUM = os.environ.get("CRONWARDEN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def browser():  # type: ignore[no-untyped-def]
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()


async def test_the_list_shows_states_and_filters_by_state_and_tag(daemon: DaemonFactory, receiver: Receiver,
                                                                  browser) -> None:  # type: ignore[no-untyped-def]
    d = await daemon(config(receiver, "  db: {every: 1h, tags: [data]}\n  web: {every: 1h}\n"
                                      "  etl: {every: 1h, tags: [data]}"))
    await d.ping("db/fail")
    await d.ping("web")
    page = await browser.new_page()
    await page.goto(d.url + "/")
    rows = page.locator("#monitors tbody tr")
    assert await rows.count() == 3
    assert await page.locator("#monitors tr", has_text="db").locator(".st").inner_text() == "down"
    assert await page.locator("#monitors tr", has_text="web").locator(".st").inner_text() == "up"
    await page.click("text=down 1")
    assert await rows.count() == 1 and "db" in await rows.first.inner_text()
    await page.click("text=all 3")
    await page.click("a.f:text-is('data')")
    assert sorted([t.split()[0] for t in await rows.all_inner_texts()]) == ["db", "etl"]


async def test_a_monitor_page_shows_runs_and_job_output_as_text(daemon: DaemonFactory, receiver: Receiver,
                                                                browser) -> None:  # type: ignore[no-untyped-def]
    d = await daemon(config(receiver, "  web: {every: 1h}"))
    await d.ping("web/start")
    await d.ping("web/1", method="POST", data=b"<script>window.pwned=1</script><b>bold</b>")
    await d.ping("web/0", method="POST", data=b"all good")
    page = await browser.new_page()
    response = await page.goto(d.url + "/monitors/web")
    assert response is not None and "script-src" not in (csp := response.headers["content-security-policy"])
    assert "default-src 'none'" in csp  # no script may run at all
    runs = page.locator("#runs tbody tr")
    assert await runs.count() == 2
    assert "<script>window.pwned=1</script><b>bold</b>" in await runs.nth(1).inner_text()
    assert await page.evaluate("window.pwned === undefined")
    assert await page.locator("b", has_text="bold").count() == 0


async def test_the_ack_pause_and_resume_buttons_work(daemon: DaemonFactory, receiver: Receiver,
                                                     browser) -> None:  # type: ignore[no-untyped-def]
    d = await daemon(config(receiver, "  job: {every: 1h, repeat: 1h}"))
    await d.ping("job/fail")
    await receiver.wait_for(lambda b: b["event"] == "failed")
    page = await browser.new_page()
    await page.goto(d.url + "/monitors/job")
    await page.click("#ack")
    await page.wait_for_load_state()
    assert "acknowledged" in await page.locator(".alert").inner_text(), await page.inner_text("body")
    assert (await d.api("monitors/job"))["incident"]["acknowledged"] is True
    await page.fill("input[name=for]", "1h")
    await page.fill("input[name=reason]", "disk swap")
    await page.click("#pause")
    assert "Paused until" in await page.inner_text("body")
    assert (await d.api("monitors/job"))["status"] == "paused"
    await page.click("#resume")
    assert (await d.api("monitors/job"))["status"] != "paused"


async def test_with_a_token_the_dashboard_asks_for_it_once(daemon: DaemonFactory, receiver: Receiver,
                                                           browser) -> None:  # type: ignore[no-untyped-def]
    d = await daemon(config(receiver, "  job: {every: 1h}", server="  api_token_env: CW_TOKEN"),
                     env={"CW_TOKEN": "t0ken-for-tests"})
    page = await browser.new_page()
    await page.goto(d.url + "/monitors/job")
    assert page.url.endswith("/login")
    await page.fill("input[name=token]", "wrong")
    await page.click("button")
    assert "Wrong token" in await page.inner_text("body")
    await page.goto(d.url + "/login")
    await page.fill("input[name=token]", "t0ken-for-tests")
    await page.click("button")
    await page.goto(d.url + "/monitors/job")
    assert "No runs yet" in await page.inner_text("body")
