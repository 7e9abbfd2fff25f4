"""Learn mode's API: guided collecting and undo, POST/GET/DELETE /api/learn, POST /api/model, and a learned
model that survives a restart. A learning job runs a real fine-tune of the tiny synthetic model in its own
process (seconds); the tests that need none answer in milliseconds."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnistlab[serve]'")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from mnistlab.checkpoints import is_checkpoint_folder  # noqa: E402
from mnistlab.cli import main  # noqa: E402
from mnistlab.records import WEIGHTS_FILE  # noqa: E402
from mnistlab.serve import create_app  # noqa: E402
from mnistlab.serve.learn_job import CHOICE_FILE, LEARN_MIN_PER_DIGIT, STATUS_FILE, WANTED_PER_DIGIT  # noqa: E402
from tests.test_finetune import person_folder  # noqa: E402
from tests.test_serve import ONE, drawing  # noqa: E402

LOCAL = "http://localhost"
JOB_SECONDS = 240  # a job of the tiny model takes seconds; a loaded CI machine may take much longer


def client_for(run, collect: Path | None, data: Path | None = None, **kwargs) -> TestClient:
    app = create_app(run, collect_dir=collect, learn_data_dir=str(data) if data else None, **kwargs)
    return TestClient(app, base_url=LOCAL)


def post_drawing(client: TestClient, label: int):
    return client.post(f"/api/collect?label={label}", content=drawing(ONE), headers={"Content-Type": "image/png"})


def wait_for_end(client: TestClient) -> dict:
    deadline = time.monotonic() + JOB_SECONDS
    state = client.get("/api/learn").json()
    while state["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        state = client.get("/api/learn").json()
    return state


def hidden_leftovers(folder: Path) -> list[str]:
    """Staging folders and temporary files in the learn folder: what a half-written save leaves."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name) if folder.exists() else []


# --- without a job --------------------------------------------------------------------------------------------


def test_a_drawing_the_model_takes_for_no_digit_is_saved_all_the_same(tiny_run, tmp_path):
    """In learn mode the person says which digit it is: a drawing the model's rule refuses is saved, `read_as`
    null (a model whose thresholds refuse everything)."""
    run = tmp_path / "refuses-all"
    shutil.copytree(tiny_run[0], run)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config["reject"] = {"score": "max_probability", "thresholds": {"normal": 1.0, "strict": 1.0}}
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    answer = post_drawing(client_for(run, tmp_path / "mine"), 3)
    assert answer.status_code == 201, answer.text
    assert answer.json()["read_as"] is None and 0 < answer.json()["confidence"] < 1
    assert len(list((tmp_path / "mine" / "3").iterdir())) == 1


def test_collected_says_how_many_are_wanted_and_which_digits_are_short(tiny_run, tmp_path):
    client = client_for(tiny_run[0], tmp_path / "mine")
    for _ in range(LEARN_MIN_PER_DIGIT):
        assert post_drawing(client, 4).status_code == 201
    info = client.get("/api/collected").json()
    assert info["wanted"] == WANTED_PER_DIGIT and info["minimum"] == LEARN_MIN_PER_DIGIT
    assert info["short"] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    saved = post_drawing(client, 7).json()
    assert saved["counts"][7] == 1 and saved["counts"][4] == LEARN_MIN_PER_DIGIT
    assert 0 <= saved["read_as"] <= 9 and 0 <= saved["confidence"] <= 1


def test_undo_removes_the_last_saved_drawing_or_the_one_named(tiny_run, tmp_path):
    folder = tmp_path / "mine"
    client = client_for(tiny_run[0], folder)
    first, second = post_drawing(client, 3).json()["file"], post_drawing(client, 5).json()["file"]
    os.utime(folder / first, ns=(1, 1))  # whatever the clock's resolution, the second is the newer
    undone = client.delete("/api/collect").json()
    assert undone["file"] == second and undone["label"] == 5 and undone["counts"][5] == 0
    assert client.delete("/api/collect", params={"file": first}).json()["counts"][3] == 0
    assert client.delete("/api/collect").status_code == 404
    assert client.delete("/api/collect", params={"file": first}).status_code == 404


@pytest.mark.parametrize("file", ["../x.png", "3/../../etc/passwd", "3/.20250101-120000-0a1b2c3d.png.tmp", "3",
                                  "10/20250101-120000-0a1b2c3d.png", "3/notes.txt", "/3/20250101-120000-0a1b2c3d.png"])
def test_undo_takes_only_a_drawing_s_name_as_collect_gave_it(tiny_run, tmp_path, file):
    folder = tmp_path / "mine"
    client = client_for(tiny_run[0], folder)
    post_drawing(client, 3)
    response = client.delete("/api/collect", params={"file": file})
    assert response.status_code == 422 and "file" in response.json()["detail"]
    assert len(list((folder / "3").iterdir())) == 1


def test_undo_does_not_follow_a_symlink(tiny_run, tmp_path):
    folder = tmp_path / "mine"
    client = client_for(tiny_run[0], folder)
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "20250101-120000-0a1b2c3d.png").write_bytes(b"keep me")
    (folder / "3").symlink_to(outside)
    assert client.delete("/api/collect", params={"file": "3/20250101-120000-0a1b2c3d.png"}).status_code == 404
    assert client.delete("/api/collect").status_code == 404
    assert (outside / "20250101-120000-0a1b2c3d.png").read_bytes() == b"keep me"


def test_the_model_says_which_answers_and_that_it_can_learn(tiny_run, tmp_path):
    client = client_for(tiny_run[0], tmp_path / "mine")
    info = client.get("/api/model").json()
    assert info["learn"] is True and info["use"] == "original" and info["learned"] is None
    assert info["original"] == info["name"] == tiny_run[0].name
    assert client.get("/api/learn").json() == {
        "state": "idle", "progress": 0.0, "message": "no learning yet", "before": None, "after": None, "mnist": None,
        "run": None, "trained": None, "held_out": None, "skipped": [], "seconds": None, "limit_seconds": 300.0}
    assert not (tmp_path / "mine-learned").exists()  # made by the first job


def test_too_few_drawings_is_a_422_naming_the_digits(tiny_run, tmp_path):
    client = client_for(tiny_run[0], tmp_path / "mine")
    for digit in range(10):
        for _ in range(LEARN_MIN_PER_DIGIT - (digit in (3, 7))):
            post_drawing(client, digit)
    response = client.post("/api/learn")
    assert response.status_code == 422
    assert response.json()["detail"] == (f"too few drawings to learn from: 3 has {LEARN_MIN_PER_DIGIT - 1}, 7 has "
                                         f"{LEARN_MIN_PER_DIGIT - 1}; each digit needs at least {LEARN_MIN_PER_DIGIT}")
    assert client.get("/api/learn").json()["state"] == "idle"


def test_without_a_collect_folder_learning_is_refused_clearly(tiny_run):
    client = client_for(tiny_run[0], None)
    for response in (client.get("/api/learn"), client.post("/api/learn"), client.delete("/api/learn"),
                     client.post("/api/model", json={"use": "learned"})):
        assert response.status_code == 404
        assert response.json()["detail"] == "learning needs a collect folder: start the server with --collect DIR"
    assert client.get("/api/model").json()["learn"] is False


def test_switching_before_anything_is_learned_is_a_409_and_a_bad_choice_a_422(tiny_run, tmp_path):
    client = client_for(tiny_run[0], tmp_path / "mine")
    response = client.post("/api/model", json={"use": "learned"})
    assert response.status_code == 409 and "no learned model yet" in response.json()["detail"]
    for body in ({"use": "mine"}, {}, {"use": ["learned"]}):
        assert client.post("/api/model", json=body).status_code == 422
    assert client.post("/api/model", json={"use": "original"}).status_code == 409
    assert client.delete("/api/learn").status_code == 409  # nothing to cancel


def test_learn_out_without_collect_is_a_usage_error(tiny_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(tiny_run[0]), "--learn-out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "--learn-out needs --collect" in capsys.readouterr().err


# --- a whole job -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def learned(tiny_run, tmp_path_factory):
    """One job of the tiny model on 5 printed drawings a digit, plus corrupt files: (client, collect, learn folder,
    the state while it ran, what collecting answered meanwhile, the state at the end)."""
    run, data = tiny_run
    collect = person_folder(tmp_path_factory.mktemp("learned"), per_digit=LEARN_MIN_PER_DIGIT)
    (collect / "3" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (collect / "3" / "empty.png").write_bytes(b"")
    (collect / "5" / "text.png").write_text("not an image")
    client = client_for(str(run), collect, data)
    started = client.post("/api/learn")
    assert started.status_code == 202, started.text
    second = client.post("/api/learn")
    during = {"state": started.json(), "second": (second.status_code, second.json()["detail"]),
              "collect": post_drawing(client, 1).status_code,
              "predict": client.post("/api/predict", content=drawing(ONE), headers={"Content-Type": "image/png"}
                                     ).json()["model"]["name"]}
    return client, collect, Path(f"{collect}-learned"), during, wait_for_end(client)


@pytest.mark.slow
def test_a_job_answers_202_then_409_and_ends_with_before_and_after(learned):
    client, collect, folder, during, end = learned
    assert during["state"]["state"] == "running" and 0 <= during["state"]["progress"] <= 1
    assert during["second"][0] == 409 and "already running" in during["second"][1]
    assert end["state"] == "done", end
    assert end["progress"] == 1.0 and 0 <= end["before"] <= 1 and 0 <= end["after"] <= 1
    assert set(end["mnist"]) == {"before", "after"} and end["held_out"] >= 10 and end["trained"] >= 20
    assert "/" not in end["run"] and end["run"].startswith("run-mine-")
    assert is_checkpoint_folder(folder / end["run"]) and hidden_leftovers(folder) == []


@pytest.mark.slow
def test_collecting_and_predicting_go_on_while_it_learns(learned):
    _, _, _, during, _ = learned
    assert during["collect"] == 201 and during["predict"] == "run"  # the original answers until it is done


@pytest.mark.slow
def test_corrupt_files_in_the_folder_are_skipped_with_a_reason(learned):
    end = learned[-1]
    skipped = {s["file"]: s["reason"] for s in end["skipped"]}
    assert set(skipped) == {"3/truncated.png", "3/empty.png", "5/text.png"}
    assert all(reason and "\n" not in reason for reason in skipped.values())
    assert "3 could not be read" in end["message"]


@pytest.mark.slow
def test_the_learned_model_answers_and_the_original_comes_back_and_goes_again(learned):
    client, _, _, _, end = learned
    info = client.get("/api/model").json()
    assert info["use"] == "learned" and info["name"] == info["learned"] == end["run"] and info["original"] == "run"
    predicted = client.post("/api/predict", content=drawing(ONE), headers={"Content-Type": "image/png"})
    assert predicted.json()["model"]["name"] == end["run"]
    assert client.post("/api/model", json={"use": "original"}).json()["name"] == "run"
    assert client.get("/api/model").json()["use"] == "original"
    assert client.post("/api/model", json={"use": "learned"}).json()["name"] == end["run"]


@pytest.mark.slow
def test_a_restarted_server_keeps_the_drawings_the_learned_run_and_the_choice(learned, tiny_run):
    client, collect, folder, _, end = learned
    counts = client.get("/api/collected").json()["counts"]
    client.post("/api/model", json={"use": "learned"})
    again = client_for(str(tiny_run[0]), collect)
    assert again.get("/api/collected").json()["counts"] == counts
    assert again.get("/api/model").json()["use"] == "learned" and again.get("/api/learn").json()["run"] == end["run"]
    client.post("/api/model", json={"use": "original"})
    assert client_for(str(tiny_run[0]), collect).get("/api/model").json()["use"] == "original"
    client.post("/api/model", json={"use": "learned"})


@pytest.mark.slow
def test_a_learned_run_of_another_model_is_not_served(learned, tiny_run, tmp_path):
    _, collect, folder, _, end = learned
    other = tmp_path / "other"
    shutil.copytree(tiny_run[0], other)
    weights = other / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # other weights, same shape
    info = client_for(str(other), collect).get("/api/model").json()
    assert info["use"] == "original" and info["learned"] is None


@pytest.mark.slow
def test_the_learned_run_is_an_ordinary_run_for_the_other_commands(learned, tiny_run, capsys):
    _, collect, folder, _, end = learned
    run = folder / end["run"]
    assert main(["evaluate", str(run), "--images", str(collect)]) == 0
    assert main(["predict", str(run), str(next((collect / "1").glob("d1-*.png")))]) == 0
    assert json.loads((folder / CHOICE_FILE).read_text())["run"] == end["run"]
    assert json.loads((folder / STATUS_FILE).read_text())["state"] == "done"
    with Image.open(next((collect / "1").glob("*.png"))) as image:
        assert image.size[0] > 0


def test_more_drawings_than_learning_takes_is_a_422(tiny_run, tmp_path, monkeypatch):
    from mnistlab.serve import learn

    drawings = 10 * LEARN_MIN_PER_DIGIT
    monkeypatch.setattr(learn, "MAX_DRAWINGS", drawings - 1)
    client = client_for(tiny_run[0], person_folder(tmp_path, per_digit=LEARN_MIN_PER_DIGIT))
    response = client.post("/api/learn")
    assert response.status_code == 422 and response.json()["detail"] == (
        f"the collect folder holds {drawings} drawings; learning takes at most {drawings - 1}: remove some")
