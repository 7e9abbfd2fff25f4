"""Learn mode against what goes wrong: another site's page, starts that race, a job killed, cancelled or out of
time, a full disk, and two server processes that must answer with the same model after a switch."""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnistlab[serve]'")

from mnistlab.config import FinetuneConfig  # noqa: E402
from mnistlab.finetune import finetune  # noqa: E402
from mnistlab.model_loading import load_model  # noqa: E402
from mnistlab.serve import learn_job  # noqa: E402
from mnistlab.serve.choice import weights_sha256  # noqa: E402
from mnistlab.serve.learn_job import CHOICE_FILE, STATUS_FILE, JobSpec, job_running, read_status, run_job  # noqa: E402
from tests.test_finetune import person_folder  # noqa: E402
from tests.test_learn import JOB_SECONDS, client_for, hidden_leftovers, wait_for_end  # noqa: E402

OTHER_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}


@pytest.fixture
def ready(tiny_run, tmp_path):
    """A server over the tiny model with enough drawings to learn: (client, collect folder, learn folder)."""
    run, data = tiny_run
    collect = person_folder(tmp_path, per_digit=5)
    return client_for(str(run), collect, data), collect, Path(f"{collect}-learned")


def wait_until(check, seconds: float = JOB_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def status_file(folder: Path) -> dict:
    try:
        return json.loads((folder / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def assert_nothing_learned(client, folder: Path) -> None:
    assert client.get("/api/model").json()["use"] == "original"
    assert [p.name for p in folder.iterdir() if p.is_dir()] == []  # no run folder, published or staged
    assert hidden_leftovers(folder) == [] and not (folder / CHOICE_FILE).exists()


def test_another_site_cannot_learn_switch_cancel_or_undo(tiny_run, tmp_path):
    client = client_for(tiny_run[0], tmp_path / "mine", allow_origins=["*"])
    for method, path, body in (("POST", "/api/learn", None), ("DELETE", "/api/learn", None),
                               ("POST", "/api/model", {"use": "learned"}), ("DELETE", "/api/collect", None)):
        response = client.request(method, path, json=body, headers=OTHER_SITE)
        assert response.status_code == 403, (method, path)
        assert "only from this server's own page" in response.json()["detail"]
    assert client.get("/api/learn").json()["state"] == "idle"


@pytest.mark.slow
def test_of_starts_that_race_one_learns_and_a_cancel_leaves_nothing(ready):
    client, _, folder = ready
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda _: client.post("/api/learn").status_code, range(6)))
    assert statuses == [202, 409, 409, 409, 409, 409]
    assert client.delete("/api/learn").json()["message"] == "cancelling"
    end = wait_for_end(client)
    assert end["state"] == "failed" and end["message"] == "learning was cancelled; the model in use is unchanged"
    wait_until(lambda: not job_running(folder))
    assert_nothing_learned(client, folder)


@pytest.mark.slow
def test_a_killed_job_leaves_the_original_serving_and_nothing_half_written(tiny_run, tmp_path):
    run, data = tiny_run
    collect = person_folder(tmp_path, per_digit=20)  # enough drawings that the tiny model learns for a while
    client, folder = client_for(str(run), collect, data), Path(f"{collect}-learned")
    assert client.post("/api/learn").status_code == 202
    wait_until(lambda: status_file(folder).get("state") == "running" and "pid" in status_file(folder))
    os.kill(status_file(folder)["pid"], signal.SIGKILL)  # killed while it learns, as its own status says
    end = wait_for_end(client)
    assert end["state"] == "failed" and "stopped unexpectedly" in end["message"], end
    wait_until(lambda: not job_running(folder))
    assert_nothing_learned(client, folder)
    assert client.post("/api/learn").status_code == 202  # the lock died with the job
    client.delete("/api/learn")
    wait_for_end(client)


@pytest.mark.slow
def test_a_job_past_its_time_limit_stops(tiny_run, tmp_path):
    run, data = tiny_run
    collect = person_folder(tmp_path, per_digit=5)
    client = client_for(str(run), collect, data, learn_seconds=0.01)
    assert client.post("/api/learn").status_code == 202
    end = wait_for_end(client)
    assert end["state"] == "failed" and "longer than its limit of 0.01 s" in end["message"]
    wait_until(lambda: not job_running(Path(f"{collect}-learned")))
    assert_nothing_learned(client, Path(f"{collect}-learned"))


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_fails_the_job_in_one_line_and_leaves_nothing(tiny_run, tmp_path, monkeypatch):
    """The job itself, run here: the run's files cannot be written."""
    run, data = tiny_run
    collect = person_folder(tmp_path, per_digit=5)
    folder = tmp_path / "learned"
    folder.mkdir()
    monkeypatch.setattr(Path, "write_bytes", _full_disk)  # how the run folder's files are written
    spec = JobSpec(base=str(run), images=str(collect), folder=str(folder), run="run-mine-1", data_dir=str(data))
    assert run_job(spec) == 1
    status = read_status(folder)
    assert status["state"] == "failed" and "the disk is full" in status["message"] and "\n" not in status["message"]
    assert status["message"].endswith("the model in use is unchanged")
    assert sorted(p.name for p in folder.iterdir()) == [STATUS_FILE]


def test_a_full_disk_when_a_job_starts_is_a_500_that_says_so(tiny_run, tmp_path, monkeypatch):
    collect = person_folder(tmp_path, per_digit=5)
    client = client_for(str(tiny_run[0]), collect)
    monkeypatch.setattr(learn_job, "write_json", _full_disk)
    response = client.post("/api/learn")
    assert response.status_code == 500 and "the disk is full" in response.json()["detail"]
    assert not job_running(Path(f"{collect}-learned"))


def _get_model(port: int, connection: http.client.HTTPConnection | None = None) -> str:
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/api/model")
    return json.loads(connection.getresponse().read())["use"]


@pytest.mark.slow
def test_with_two_workers_every_process_answers_with_the_model_chosen(tiny_run, tmp_path):
    run, data = tiny_run
    collect = person_folder(tmp_path, per_digit=5)
    folder = Path(f"{collect}-learned")
    finetune(FinetuneConfig(base=str(run), images=str(collect), out=str(folder / "run-mine-1"), device="cpu",
                            data_dir=str(data), epochs=1, progress=False))
    (folder / CHOICE_FILE).write_text(json.dumps({"use": "original", "run": "run-mine-1",
                                                  "base_sha256": weights_sha256(load_model(run))}))
    server = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", str(run), "--collect", str(collect),
                               "--workers", "2", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        port = int(re.search(r":(\d+)/", server.stdout.readline()).group(1))
        held = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(4)]
        # connections held open at once are spread over both processes (each takes one when it holds fewer)
        assert {_get_model(port, c) for c in held} == {"original"}
        switch = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for use in ("learned", "original", "learned"):
            switch.request("POST", "/api/model", body=json.dumps({"use": use}),
                           headers={"Content-Type": "application/json"})
            assert json.loads(switch.getresponse().read())["use"] == use
            assert {_get_model(port, c) for c in held} == {use}
            assert {_get_model(port) for _ in range(6)} == {use}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)


@pytest.mark.slow
def test_an_exported_model_collects_but_cannot_learn_and_says_so(tiny_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from mnistlab.export import ExportConfig, export

    exported = export(tiny_run[0], ExportConfig(out=str(tmp_path / "model.onnx")))
    client = client_for(str(exported), tmp_path / "mine")
    for response in (client.get("/api/learn"), client.post("/api/learn"),
                     client.post("/api/model", json={"use": "learned"})):
        assert response.status_code == 404
        assert response.json()["detail"] == "an exported model cannot learn: serve the run folder it was exported from"
    assert client.get("/api/model").json()["learn"] is False and not (tmp_path / "mine-learned").exists()
