"""The MLflow UI, opened where shapflow points the user (``runs_page``: the model-training view), lists the
coalition runs of a tiny attribute run by name, nested under it, with the data each trained on in the Dataset
column and the registered models in the Models column; a run's page shows its utility; the attribute run's
artifacts show the values chart.

Starts ``mlflow server`` on 127.0.0.1 against the tiny store and drives Debian's headless Chromium with
Playwright (never a downloaded browser). Keeps screenshots in test-artifacts/: mlflow-ui.png (the runs table),
mlflow-ui-run.png (a coalition run), mlflow-ui-values.png (the values chart).
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.util import find_spec
from pathlib import Path

import pytest

from shapflow.tracking import STAGE_TAG, open_tracker
from shapflow.tracking.store import runs_page

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tiny_store, tmp_path):
    uri, result, request = tiny_store
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", "127.0.0.1", "--port",
               str(port), "--backend-store-uri", uri]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, start_new_session=True,
                            stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"mlflow server did not answer in 90 s: {(tmp_path / 'server.log').read_text()[-2000:]}")
    yield base, uri, result, request
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _require_browser():
    """Skip (locally) or fail (in CI, where .ci/run installs both) without chromium or Playwright."""
    missing = [what for what, ok in (("Debian's chromium (apt-get install chromium)", Path(CHROMIUM).exists()),
                                     ("playwright (pip install playwright)", find_spec("playwright") is not None))
               if not ok]
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"browser test needs {', '.join(missing)}")


def test_runs_table_shows_nested_coalition_runs_their_data_and_the_values_chart(server, tmp_path):
    _require_browser()
    from playwright import sync_api as playwright
    base, uri, result, request = server
    tracker = open_tracker(request.experiment, uri=uri)
    coalitions = tracker.search(f"tags.`{STAGE_TAG}` = 'coalition'")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       headless=True, args=FLAGS,
                                                       viewport={"width": 2000, "height": 1000})
        try:
            page = browser.new_page()
            page.goto(runs_page(base, result.experiment_id), timeout=60_000)
            page.get_by_text("attribute ·", exact=False).first.wait_for(timeout=60_000)
            expanders = page.locator("button[data-component-id*=runnamecellrenderer]")
            for k in range(expanders.count()):  # child runs are listed under their (collapsed) parent
                expanders.nth(k).click()
            page.get_by_text("coalition 00", exact=False).first.wait_for(timeout=60_000)
            page.get_by_text(f"{request.cfg.name}-coalition-", exact=False).first.wait_for(timeout=60_000)
            listing = page.inner_text("body")
            shown = [r.info.run_name for r in coalitions if r.info.run_name in listing]
            assert len(shown) == len(coalitions), (shown, listing[:2000])
            datasets = [f"{request.cfg.name}-coalition-{r.data.params['coalition_id']}" for r in coalitions]
            assert [d for d in datasets if d not in listing] == [], listing[:3000]  # the Dataset column, per run
            lines = {line.split(" (")[0].strip() for line in listing.splitlines()}  # "name (digest)" -> name
            expected = {"Runs", "Dataset", "Models", f"{request.cfg.name}-contributors", f"{request.cfg.name}-pruned"}
            assert expected <= lines, (expected - lines, listing[:3000])  # training runs, data, registered models
            page.screenshot(path=str(ARTIFACTS / "mlflow-ui.png"), full_page=True)
            run = coalitions[0]
            page.goto(f"{base}/#/experiments/{result.experiment_id}/runs/{run.info.run_id}", timeout=60_000)
            page.get_by_text("utility", exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "mlflow-ui-run.png"), full_page=True)
            body = page.inner_text("body")
            assert run.info.run_name in body
            assert f"{run.data.metrics['utility']:.3f}"[:5] in body
            page.goto(f"{base}/#/experiments/{result.experiment_id}/runs/{result.run_id}/artifacts"
                      "?workflowType=machine_learning", timeout=60_000)
            page.get_by_text("values.png", exact=True).first.click(timeout=60_000)
            chart = page.locator("img[src^='blob:']").first
            chart.wait_for(timeout=60_000)
            assert chart.evaluate("img => img.complete && img.naturalWidth") > 100  # the chart, drawn
            page.screenshot(path=str(ARTIFACTS / "mlflow-ui-values.png"), full_page=True)
        finally:
            browser.close()
