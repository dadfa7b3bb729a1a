"""The dashboard in headless Chromium, served by the example under uvicorn.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them). Without them the test is skipped, unless DBQUEUE_REQUIRE_BROWSER is
set (CI sets it), when it fails. Screenshots go to test-results/ (or
DBQUEUE_TEST_OUTPUT).
"""

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.tasks import TaskResultStatus

from dbqueue_embedded.models import Job
from dbqueue_embedded.queues import QueueInfo
from tests.conftest import ROOT, TEST_DATABASE, wait_for
from tests.test_servers import ExampleServer

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
OUTPUT = Path(os.environ.get("DBQUEUE_TEST_OUTPUT", ROOT / "test-results"))


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = (
            "Needs Chromium and chromedriver: apt install chromium chromium-driver"
        )
        if os.environ.get("DBQUEUE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--window-size=1280,1500"):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(CHROMEDRIVER)
    )
    yield driver
    driver.quit()


@pytest.fixture
def example():
    server = ExampleServer("uvicorn")
    yield server
    server.kill()


def element_count(browser, selector: str) -> int:
    return browser.execute_script(
        "return document.querySelectorAll(arguments[0]).length", selector
    )


def test_the_dashboard_renders_refreshes_charts_and_acts(browser, example):
    from selenium.webdriver.common.by import By

    User.objects.create_superuser("operator", password="secret-enough")
    for kind in ("quick", "quick", "failing", "slow"):
        example.enqueue(kind)
    wait_for(lambda: Job.objects.filter(status=TaskResultStatus.FAILED).exists())
    wait_for(lambda: Job.objects.filter(status=TaskResultStatus.RUNNING).exists())

    # Anonymous: refused, sent to the admin's login page.
    browser.get(f"{example.url}/queue/")
    assert "/admin/login/" in browser.current_url
    assert element_count(browser, "#panels") == 0

    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys("secret-enough")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(lambda: browser.current_url.endswith("/queue/"))

    # It renders, and the chart draws bars with a real size.
    assert browser.find_element(By.CSS_SELECTOR, "header h1").text == "Queue: default"
    bars = browser.find_elements(By.CSS_SELECTOR, "#throughput-chart rect")
    assert bars
    assert all(bar.size["height"] > 0 and bar.size["width"] > 0 for bar in bars)
    assert element_count(browser, "#throughput-chart rect.failed") == 1

    # It refreshes live: a job that fails after the page loaded shows up.
    failures = element_count(browser, "#failures tr[data-job]")
    example.enqueue("failing")
    wait_for(lambda: element_count(browser, "#failures tr[data-job]") == failures + 1)

    # An action works: retry a failed job from its row.
    job = Job.objects.filter(status=TaskResultStatus.FAILED).latest("finished_at")
    browser.find_element(
        By.CSS_SELECTOR, f'#failures tr[data-job="{job.id}"] button'
    ).click()
    wait_for(lambda: "Retried 1." in browser.page_source)
    wait_for(lambda: len(Job.objects.get(id=job.id).worker_ids) == 2)

    # Pause the reports queue while a report and an export run, then add a
    # report that waits.
    example.enqueue("slow")
    example.enqueue("export")
    wait_for(lambda: element_count(browser, '#queues tr[data-queue="reports"]'))
    browser.find_element(
        By.CSS_SELECTOR, '#queues tr[data-queue="reports"] button'
    ).click()
    wait_for(lambda: QueueInfo("reports").paused)
    example.enqueue("slow")
    waiting = '#queues tr.paused[data-queue="reports"] td:nth-child(2)'
    wait_for(
        lambda: browser.execute_script(
            "var cell = document.querySelector(arguments[0]);"
            "return cell && cell.textContent.trim() === '1';",
            waiting,
        )
    )
    # The export started before the pause reports its progress as it runs.
    wait_for(lambda: element_count(browser, "#running progress[value]"))
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(OUTPUT / f"dashboard-{TEST_DATABASE}.png"))
