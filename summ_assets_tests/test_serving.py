"""Serving: `summ-assets summarize`, the HTTP API and the micro-batcher, on the tiny random student."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from summ_assets_tests.helpers import BUNDLED, REPO, tiny_models

DOC = BUNDLED / "raw" / "ko-rag-pipeline.md"
ROOT = "RAG 파이프라인 설계"
# the document's headings (the title has a body of its own, so nothing is folded), tiny budget = 1 part each
EXPECTED_PATHS = [ROOT] + [
    f"{ROOT} / {h}"
    for h in [
        "전체 구조",
        "문서 로드와 청킹",
        "임베딩",
        "검색 단계",
        "검색 단계 / 하이브리드 검색",
        "재순위화",
        "생성",
        "평가",
        "운영과 모니터링",
    ]
]


def _body_of(text: str, heading: str) -> str:
    return text[text.index(heading) :]


@pytest.fixture
def tiny_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SUMM_PROFILE", "tiny")
    monkeypatch.setenv("SUMM_ARTIFACTS", str(tmp_path / "artifacts"))
    _, student = tiny_models()
    return student


def _promote(tmp_path: Path, path: Path | None) -> Path:
    pointer = tmp_path / "artifacts" / "promoted_student" / "current.json"
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"path": str(path) if path else None, "version": "v1", "report": "r"}))
    return pointer


# ------------------------------------------------------------------------------------------ CLI


def test_cli_summarize_json_one_entry_per_section_with_heading_paths(
    tiny_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from summ_assets.cli import main

    _promote(tmp_path, tiny_env)  # no --model: the promoted student is used
    out = tmp_path / "out.json"
    assert main(["summarize", str(DOC), "--format", "json", "--output", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["model"] == str(tiny_env.resolve())
    [doc] = result["documents"]
    assert doc["file"] == str(DOC)
    rows = doc["sections"]
    assert [r["heading_path"] for r in rows] == EXPECTED_PATHS
    assert result["n_sections"] == len(EXPECTED_PATHS)
    text = DOC.read_text(encoding="utf-8")
    # spans are lossless, in order, and each starts at its own heading
    assert rows[0]["char_start"] == text.index("# RAG")
    assert rows[-1]["char_end"] == len(text)
    for a, b in zip(rows, rows[1:], strict=False):
        assert a["char_end"] == b["char_start"]
    for r in rows:
        assert set(r) == {"heading_path", "part", "n_parts", "summary", "char_start", "char_end"}
        assert (r["part"], r["n_parts"]) == (1, 1)
        assert isinstance(r["summary"], str)
        assert text[r["char_start"] :].lstrip("#").strip().startswith(r["heading_path"].split(" / ")[-1])
    err = capsys.readouterr().err
    assert f"{len(EXPECTED_PATHS)} sections, " in err and " tok/s" in err


def test_cli_summarize_md_and_jsonl_to_stdout(tiny_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from summ_assets.cli import main

    assert main(["summarize", str(DOC), "--model", str(tiny_env), "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(x)["heading_path"] for x in lines] == EXPECTED_PATHS
    assert main(["summarize", str(DOC), "--model", str(tiny_env)]) == 0
    md = capsys.readouterr().out
    assert md.startswith(f"# {DOC}\n")
    assert sum(line.startswith("- **") for line in md.splitlines()) == len(EXPECTED_PATHS)
    assert f"- **{ROOT} / 검색 단계 / 하이브리드 검색** → " in md


def test_cli_summarize_rejects_bad_files_naming_them(
    tiny_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from summ_assets.cli import main

    bad = tmp_path / "bad.md"
    bad.write_bytes("# 제목\n\n본문 ".encode() + b"\xff\xfe")
    assert main(["summarize", str(DOC), str(bad), "--model", str(tiny_env)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:8: invalid UTF-8" in err and "Traceback" not in err
    assert main(["summarize", str(tmp_path / "missing.md"), "--model", str(tiny_env)]) == 2
    assert "missing.md: no such file" in capsys.readouterr().err


def test_resolve_model_path_says_what_to_do(tiny_env: Path, tmp_path: Path) -> None:
    from summ_assets.serving import ServingError, resolve_model_path

    with pytest.raises(ServingError, match=r"make demo.*--model"):
        resolve_model_path(None)
    _promote(tmp_path, None)
    with pytest.raises(ServingError, match="no student has passed the promotion gates"):
        resolve_model_path(None)
    _promote(tmp_path, tmp_path / "gone")
    with pytest.raises(ServingError, match="does not exist"):
        resolve_model_path(None)
    with pytest.raises(ServingError, match="no config.json"):
        resolve_model_path(tmp_path)
    assert resolve_model_path(str(tiny_env)) == tiny_env.resolve()


def test_cli_summarize_without_a_model_exits_2_with_a_hint(
    tiny_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from summ_assets.cli import main

    assert main(["summarize", str(DOC)]) == 2
    assert "make demo" in capsys.readouterr().err


def test_importing_serving_does_not_import_torch_dagster_or_fastapi() -> None:
    code = (
        "import sys, summ_assets.serving, summ_assets.serving.summarizer; "
        "print([m for m in ('torch', 'transformers', 'dagster', 'fastapi', 'summ_assets.defs') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    # the HTTP names load FastAPI on first use (still no torch)
    code = (
        "import sys; from summ_assets.serving import BackgroundServer, create_app, serve, DEFAULT_MAX_BYTES; "
        "print('fastapi' in sys.modules, 'torch' in sys.modules, DEFAULT_MAX_BYTES)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "True False 1000000", out.stderr


# ------------------------------------------------------------------------------------ model card

CARD_ARGS = (
    "summ-assets distilled student",
    {"student_base": "/a/student_base/x", "teacher_logits": "/a/teacher_logits/y", "train_examples": 3},
    {"alpha": 0.5, "lora": {"r": 8, "targets": ["q_proj", "v_proj"]}},
    {"val_loss": 1.25, "steps": 40, "note": "ok", "flag": None, "train_loss_curve": [[1, 2.0]]},
)


def test_model_card_json_is_written_and_read_back_identically(tmp_path: Path) -> None:
    from summ_assets.core.modelcard import read_model_card, write_model_card

    title, lineage, config, metrics = CARD_ARGS
    write_model_card(tmp_path, title, lineage, config, metrics)
    scalars = {k: v for k, v in metrics.items() if k != "train_loss_curve"}
    expected = {"title": title, "lineage": lineage, "config": config, "metrics": scalars}
    assert read_model_card(tmp_path) == expected
    assert json.loads((tmp_path / "card.json").read_text(encoding="utf-8")) == expected
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")  # the human card still says the same
    assert readme.startswith(f"# {title}\n") and '"teacher_logits": "/a/teacher_logits/y"' in readme
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # atomic: no temp files


def test_folder_without_card_json_gets_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from summ_assets.core.modelcard import ModelCardError, read_model_card, write_model_card
    from summ_assets.serving import model_card

    monkeypatch.setenv("SUMM_ARTIFACTS", str(tmp_path / "artifacts"))
    old = tmp_path / "old"
    old.mkdir()
    write_model_card(old, *CARD_ARGS)
    (old / "card.json").unlink()  # as an older summ-assets wrote it: README.md only
    (old / "training_metrics.json").write_text(json.dumps({"val_loss": 1.5, "curve": [[1, 2.0]]}))
    with pytest.raises(ModelCardError, match=r"old: no card\.json .*re-materialize the model") as info:
        read_model_card(old)
    assert info.value.ours
    card = model_card(old)
    assert str(old) in card["card_error"] and "re-materialize" in card["card_error"]
    assert card["metrics"] == {"val_loss": 1.5} and "lineage" not in card
    (old / "card.json").write_text("{not json")
    with pytest.raises(ModelCardError, match=r"card\.json: unreadable"):
        read_model_card(old)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "README.md").write_text("# some-org/some-model\n\nA hub model card.\n")
    with pytest.raises(ModelCardError, match=r"bare: no model card \(card\.json\)") as info:
        read_model_card(bare)
    assert not info.value.ours


# ------------------------------------------------------------------------------------------ API


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny student with a model card and training metrics, as the graph writes them."""
    from summ_assets.core.modelcard import write_model_card

    _, student = tiny_models()
    folder = tmp_path_factory.mktemp("served") / "student"
    shutil.copytree(student, folder)
    write_model_card(
        folder,
        "summ-assets distilled student",
        {"student_base": "/a/student_base/x", "teacher_logits": "/a/teacher_logits/y", "train_examples": 3},
        {"alpha": 0.5},
        {"val_loss": 1.25, "train_loss_curve": [[1, 2.0]]},
    )
    (folder / "training_metrics.json").write_text(
        json.dumps({"val_loss": 1.25, "train_loss_curve": [[1, 2.0]]})
    )
    return folder


@pytest.fixture(scope="module")
def summarizer(model_dir: Path):
    from summ_assets.core.profiles import get_profile
    from summ_assets.serving import Summarizer

    # a wider batching window than the default 20 ms keeps the cross-request batching check deterministic
    s = Summarizer(model_dir, profile=get_profile("tiny"), batch_window_s=0.15)
    yield s
    s.close()


def _client(summarizer, **kw):
    from fastapi.testclient import TestClient

    from summ_assets.serving import create_app

    opts = {k: kw.pop(k) for k in ("max_bytes", "timeout_s", "max_queue_sections") if k in kw}
    return TestClient(create_app(summarizer, **opts), **kw)


def test_api_summarize_markdown_and_json(summarizer) -> None:
    body = DOC.read_bytes()
    with _client(summarizer) as c:
        r = c.post("/summarize", content=body, headers={"content-type": "text/markdown; charset=utf-8"})
        assert r.status_code == 200, r.text
        data = r.json()
        assert [s["heading_path"] for s in data["sections"]] == EXPECTED_PATHS
        assert data["n_sections"] == len(EXPECTED_PATHS)
        assert data["model"] == str(summarizer.path) and data["tokens_per_s"] > 0
        assert all(isinstance(s["summary"], str) for s in data["sections"])

        r = c.post("/summarize", json={"text": "# 제목\n\n짧은 본문이다.\n", "doc_id": "memo"})
        assert r.status_code == 200, r.text
        assert r.json()["doc_id"] == "memo"
        assert [s["heading_path"] for s in r.json()["sections"]] == ["제목"]


def test_api_rejects_oversize_bodies_with_413(summarizer) -> None:
    body = DOC.read_bytes()
    with _client(summarizer, max_bytes=4096) as c:
        r = c.post("/summarize", content=body)
        assert r.status_code == 413 and "exceeds the limit of 4,096 bytes" in r.json()["error"]
        # no content-length (chunked upload): cut off while streaming
        r = c.post("/summarize", content=iter([body[:3000], body[3000:]]))
        assert r.status_code == 413 and "error" in r.json()
        assert c.post("/summarize", content=body[:4000].decode("utf-8", "ignore").encode()).status_code == 200


def test_api_invalid_input_gets_a_clear_4xx(summarizer) -> None:
    with _client(summarizer) as c:
        r = c.post("/summarize", content=b"# ok\n\nbad \xff\xfe here")
        assert r.status_code in (400, 422)
        assert r.json() == {"error": "request body:3:5: invalid UTF-8 (byte 0xff); re-save the file as UTF-8"}
        r = c.post("/summarize", content=b"")
        assert r.status_code == 400 and "empty body" in r.json()["error"]
        r = c.post("/summarize", content=b"  \n\t\n")
        assert r.status_code == 422 and "text is empty" in r.json()["error"]
        r = c.post("/summarize", json={"text": "   "})
        assert r.status_code == 422 and "text is empty" in r.json()["error"]
        r = c.post("/summarize", json={"doc": "x"})
        assert r.status_code == 422 and '"text"' in r.json()["error"]
        r = c.post("/summarize", content=b'{"text": ', headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = c.post("/summarize", content="---\ntitle: x\n본문\n".encode())
        assert r.status_code == 422 and "front matter" in r.json()["error"]
        r = c.get("/nope")
        assert r.status_code == 404 and r.json() == {"error": "Not Found"}


def test_api_health_and_model_card(summarizer, model_dir: Path) -> None:
    with _client(summarizer) as c:
        h = c.get("/health")
        assert h.status_code == 200 and h.json()["status"] == "ok"
        assert h.json()["model"] == str(model_dir.resolve())
        m = c.get("/model").json()
        assert m["path"] == str(model_dir.resolve())
        assert m["lineage"]["teacher_logits"] == "/a/teacher_logits/y"
        assert m["metrics"] == {"val_loss": 1.25}  # scalars only: no loss curve
        assert m["title"] == "summ-assets distilled student" and m["config"] == {"alpha": 0.5}
        assert "card_error" not in m
        assert m["serving"]["profile"] == "tiny" and m["serving"]["quantize"] is None


def test_api_eight_concurrent_requests_are_all_answered_and_batched(summarizer) -> None:
    text = DOC.read_text(encoding="utf-8")
    docs = [text] + [_body_of(text, "## 검색 단계") + f"\n\n추가 문단 {i}.\n" for i in range(7)]
    before = dict(summarizer.stats)
    with _client(summarizer) as c, ThreadPoolExecutor(8) as pool:
        barrier = threading.Barrier(8)

        def one(i: int):
            barrier.wait()
            return c.post("/summarize", json={"text": docs[i], "doc_id": f"d{i}"})

        responses = list(pool.map(one, range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert [r.json()["doc_id"] for r in responses] == [f"d{i}" for i in range(8)]
    assert [len(r.json()["sections"]) for r in responses] == [10] + [6] * 7
    n = sum(len(r.json()["sections"]) for r in responses)
    assert summarizer.stats["sections"] - before["sections"] == n
    # sections of different requests shared batches: fewer batches than requests, full batches
    assert summarizer.stats["batches"] - before["batches"] < 8
    assert summarizer.stats["max_batch"] == summarizer.batch_size


def _slow_batches(summarizer, monkeypatch, seconds: float):
    """Every generation batch of `summarizer` takes `seconds` longer (an overloaded model); returns the
    real batch function, to put back."""
    real = summarizer._generate_batch

    def slow(texts):
        time.sleep(seconds)
        return real(texts)

    monkeypatch.setattr(summarizer, "_generate_batch", slow)
    return real


def test_api_timeout_is_504_and_errors_never_leak_a_traceback(summarizer, monkeypatch) -> None:
    real = _slow_batches(summarizer, monkeypatch, 0.6)
    with _client(summarizer, timeout_s=0.2) as c:
        r = c.post("/summarize", content="# 제목\n\n본문이다.\n".encode())
        assert r.status_code == 504 and "not ready within 0.2s" in r.json()["error"]

    def broken(texts):
        raise RuntimeError("secret internals at /opt/weights")

    monkeypatch.setattr(summarizer, "_generate_batch", broken)
    with _client(summarizer, raise_server_exceptions=False) as c:
        r = c.post("/summarize", content="# 제목\n\n본문이다.\n".encode())
        assert r.status_code == 500
        assert r.json() == {"error": "internal error (RuntimeError); see the server log"}
    monkeypatch.setattr(summarizer, "_generate_batch", real)
    with _client(summarizer) as c:  # the worker survived both
        assert c.post("/summarize", content="# 제목\n\n본문이다.\n".encode()).status_code == 200


def test_real_uvicorn_on_loopback(summarizer) -> None:
    import httpx

    from summ_assets.serving import BackgroundServer, create_app

    with BackgroundServer(create_app(summarizer, max_bytes=100_000)) as srv:
        assert srv.host == "127.0.0.1"
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            assert http.get("/health").json()["status"] == "ok"
            r = http.post("/summarize", content=DOC.read_bytes())
            assert r.status_code == 200
            assert [s["heading_path"] for s in r.json()["sections"]] == EXPECTED_PATHS
            r = http.post("/summarize", content=b"x" * 100_001)
            assert r.status_code == 413


def test_quantize_int8_runs_and_bad_options_fail_clearly(model_dir: Path) -> None:
    from summ_assets.core.profiles import get_profile
    from summ_assets.serving import ServingError, Summarizer

    with pytest.raises(ServingError, match="needs a CUDA GPU"):
        Summarizer(model_dir, profile=get_profile("tiny"), quantize="4bit", device="cpu")
    with pytest.raises(ServingError, match="choose one of"):
        Summarizer(model_dir, profile=get_profile("tiny"), quantize="int4")
    with Summarizer(model_dir, profile=get_profile("tiny"), quantize="int8") as q:
        rows, stats = q.summarize_document(DOC.read_text(encoding="utf-8"), "rag", timeout=60)
        assert [r["heading_path"] for r in rows] == EXPECTED_PATHS and stats["tokens"] > 0
        assert type(q.model.model.layers[0].mlp.down_proj).__module__.startswith("torch.ao.nn.quantized")


# ------------------------------------------------------------------------------------------ admission


def test_admission_counts_sections_admits_an_idle_server_and_estimates_the_wait() -> None:
    from summ_assets.serving.admission import Admission

    rate = {"s": None}
    adm = Admission(10, max_wait_s=5.0, seconds_per_section=lambda: rate["s"])
    assert adm.try_admit(25) is None  # an empty queue takes anything: refusing could never succeed later
    refused = adm.try_admit(1)
    assert refused is not None and refused.retry_after_s == 1 and "25 sections queued" in refused.reason
    adm.release(25)
    assert adm.try_admit(6) is None and adm.try_admit(4) is None  # 10 sections: at the bound
    assert adm.try_admit(1) is not None
    adm.release(10)
    rate["s"] = 0.8  # measured: 0.8 s a section
    assert adm.try_admit(4) is None
    busy = adm.try_admit(3)  # 7 sections x 0.8 s = 5.6 s > 5 s
    assert busy is not None and busy.retry_after_s == 4 and "half the request timeout" in busy.reason
    assert adm.snapshot() == {"queued_sections": 4, "max_queue_sections": 10, "admitted": 4, "refused": 3}


def test_overload_gets_503_with_retry_after_at_once_then_the_server_recovers(summarizer, monkeypatch) -> None:
    real = _slow_batches(summarizer, monkeypatch, 0.4)
    text = _body_of(DOC.read_text(encoding="utf-8"), "## 검색 단계")  # 6 sections
    with _client(summarizer, max_queue_sections=8) as c, ThreadPoolExecutor(8) as pool:
        barrier = threading.Barrier(8)

        def one(i: int):
            barrier.wait()
            t0 = time.perf_counter()
            r = c.post("/summarize", json={"text": text, "doc_id": f"d{i}"})
            return r, time.perf_counter() - t0

        results = list(pool.map(one, range(8)))
        codes = sorted(r.status_code for r, _ in results)
        assert set(codes) == {200, 503} and codes.count(200) >= 1, codes
        for r, seconds in results:
            if r.status_code == 503:
                assert int(r.headers["Retry-After"]) >= 1 and "queue full" in r.json()["error"]
                assert seconds < 0.4  # refused up front, not after waiting for the model
        health = c.get("/health").json()
        assert health["refused"] == codes.count(503) and health["queued_sections"] == 0
        monkeypatch.setattr(summarizer, "_generate_batch", real)
        assert c.post("/summarize", json={"text": text}).status_code == 200  # recovered


# ------------------------------------------------------------------------------------------ reload


class _Model:
    def __init__(self, path: str) -> None:
        self.path, self.closed = path, False

    def close(self) -> None:
        self.closed = True


def test_model_slot_keeps_an_old_model_open_until_its_requests_end_and_survives_a_failed_load(
    tmp_path: Path,
) -> None:
    from summ_assets.serving.reload import ModelSlot, watch_pointer

    a, b = _Model("a"), _Model("b")
    slot = ModelSlot(a)
    with slot.use() as first:
        assert slot.reload(lambda: b, wait=True)
        assert slot.current is b and first is a and not a.closed  # in flight: still open
    assert a.closed and slot.status()["reloads"] == 1

    def broken() -> _Model:
        raise OSError("config.json missing")

    slot.reload(broken, wait=True)
    assert slot.current is b and "config.json missing" in slot.status()["reload_error"]
    # the promoted pointer names another folder: the watcher loads it
    pointer = tmp_path / "current.json"
    pointer.write_text(json.dumps({"path": str(tmp_path / "c")}))
    (tmp_path / "c").mkdir()
    stop = threading.Event()
    watch_pointer(slot, pointer, lambda p: _Model(p), 0.05, stop)
    deadline = time.monotonic() + 10
    while slot.current.path != str(tmp_path / "c") and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    assert slot.current.path == str(tmp_path / "c") and b.closed


def test_reload_under_traffic_loses_no_request(model_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from summ_assets.core.profiles import get_profile
    from summ_assets.serving import Summarizer, create_app

    second = tmp_path / "student2"
    shutil.copytree(model_dir, second)
    old = Summarizer(model_dir, profile=get_profile("tiny"))
    app = create_app(old, reloader=lambda: Summarizer(second, profile=get_profile("tiny")))
    body = _body_of(DOC.read_text(encoding="utf-8"), "## 검색 단계")
    stop = threading.Event()
    results: list[tuple[int, str]] = []

    with TestClient(app) as c:

        def client() -> None:
            while not stop.is_set():
                r = c.post("/summarize", json={"text": body})
                results.append((r.status_code, r.json().get("model", r.text)))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert c.post("/reload").status_code == 202
        deadline = time.monotonic() + 60
        while app.state.slot.current.path != second.resolve() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        health = c.get("/health").json()
    assert {code for code, _ in results} == {200}, results[:5]
    served = [m for _, m in results]
    assert str(model_dir.resolve()) in served and served[-1] == str(second.resolve())
    assert health["reloads"] == 1 and old._closed  # the old model closed once its requests ended
    app.state.slot.current.close()
