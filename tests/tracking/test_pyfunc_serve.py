"""``mlflow models serve`` of a registered version answers a real ``/invocations`` request with the images
``shapflow models check`` gives (bit-identical through JSON).

Serves on 127.0.0.1 (a free port, a bounded wait) with ``--env-manager local``; the server runs in its own
process group and is stopped by it.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import shapflow
from shapflow.cli.main import main
from shapflow.services.lifetime import wait_group_gone
from shapflow.services.server import free_port

REF = "digits-classes-pruned@candidate"


@pytest.fixture
def served(tiny_store, tmp_path, monkeypatch):
    uri, _, _ = tiny_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # its uvicorn
           "PYTHONPATH": str(Path(shapflow.__file__).parents[1]),  # this checkout's shapflow
           "SHAPFLOW_SERVE_MAX_ROWS": "4"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{REF}",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            env=env, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not answer /ping: {log.read_text()[-3000:]}")
            try:
                if urllib.request.urlopen(f"{base}/ping", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        if not wait_group_gone(proc.pid, 20):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


def test_served_model_answers_invocations_with_the_images_of_models_check(served, tmp_path):
    body = json.dumps({"dataframe_split": {"columns": ["seed"], "data": [[0], [1]]}}).encode()
    request = urllib.request.Request(f"{served}/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        predictions = json.loads(answer.read())["predictions"]
    assert [row["seed"] for row in predictions] == [0, 1]
    for row in predictions:
        out = tmp_path / f"seed{row['seed']}.safetensors"
        check = CliRunner().invoke(main, ["models", "check", REF, "--seed", str(row["seed"]), "--image", str(out)])
        assert check.exit_code == 0, check.output
        assert torch.equal(torch.tensor(row["image"], dtype=torch.float32), load_file(out)["image"])


def _post(base: str, rows: list) -> tuple[int, dict]:
    body = json.dumps({"dataframe_split": {"columns": ["seed"], "data": rows}}).encode()
    request = urllib.request.Request(f"{base}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_served_model_answers_bad_requests_with_one_line_and_no_stack(served):
    root = str(Path(shapflow.__file__).parents[1])
    for rows, line in (([[-1]], "seed=-1 is invalid: use an integer in [0, 4294967295]"),
                       ([[2**32]], "seed=4294967296 is invalid"),
                       ([[0]] * 5, "5 rows is over this server's cap of 4 rows per request"),
                       ([[1e30]], "")):
        status, body = _post(served, rows)
        assert status == 400 and body["error_code"] in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"), body
        assert "stack_trace" not in body and "Traceback" not in body["message"] and root not in body["message"]
        assert line in body["message"].splitlines()[-1], body
    status, body = _post(served, [[3]])
    assert status == 200 and json.loads(body["predictions"][0]["settings"])["max_rows"] == 4
