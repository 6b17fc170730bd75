"""The MLflow UI lists the coalition runs of a tiny attribute run by name; a run's page shows its utility.

Starts ``mlflow server`` on 127.0.0.1 against the tiny store and drives Debian's headless Chromium with
Playwright (never a downloaded browser). Keeps a screenshot in test-artifacts/mlflow-ui.png.
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


def test_coalition_runs_are_listed_with_names_and_utility(server, tmp_path):
    _require_browser()
    from playwright import sync_api as playwright
    base, uri, result, request = server
    tracker = open_tracker(request.experiment, uri=uri)
    coalitions = tracker.search(f"tags.`{STAGE_TAG}` = 'coalition'")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       headless=True, args=FLAGS,
                                                       viewport={"width": 1600, "height": 1000})
        try:
            page = browser.new_page()
            page.goto(f"{base}/#/experiments/{result.experiment_id}/runs", timeout=60_000)
            page.get_by_text("attribute ·", exact=False).first.wait_for(timeout=60_000)
            expanders = page.locator("button[data-component-id*=runnamecellrenderer]")
            for k in range(expanders.count()):  # child runs are listed under their (collapsed) parent
                expanders.nth(k).click()
            page.get_by_text("coalition 00", exact=False).first.wait_for(timeout=60_000)
            listing = page.inner_text("body")
            shown = [r.info.run_name for r in coalitions if r.info.run_name in listing]
            assert len(shown) == len(coalitions), (shown, listing[:2000])
            page.screenshot(path=str(ARTIFACTS / "mlflow-ui.png"), full_page=True)
            run = coalitions[0]
            page.goto(f"{base}/#/experiments/{result.experiment_id}/runs/{run.info.run_id}", timeout=60_000)
            page.get_by_text("utility", exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "mlflow-ui-run.png"), full_page=True)
            body = page.inner_text("body")
            assert run.info.run_name in body
            assert f"{run.data.metrics['utility']:.3f}"[:5] in body
        finally:
            browser.close()
