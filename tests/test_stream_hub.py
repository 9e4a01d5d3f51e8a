"""Streaming from a Hub without ``datasets``: ``hf://`` and ``resolve`` URLs read by ``stream_finer``
(the token goes to the Hub's host only; HTTP errors are one line naming the URL), and the card's
"Stream with webdataset" code run as written against a local Hub (olah, offline, 127.0.0.1) serving
the release at its tag."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_hub import hub_env, olah_server
from test_stream import canonical

from finer_datasets import build
from finer_datasets.errors import SourceError, UsageError
from finer_datasets.hub.release import release
from finer_datasets.hub.stream import hub_url, stream_finer

REPO = "finer/compre_cap"


@pytest.fixture(scope="module")
def release_folder(tmp_path_factory, builder, sample_dir) -> Path:
    return build(builder, source=sample_dir, out=tmp_path_factory.mktemp("hubstream") / "cc", max_samples=3,
                 progress=False).out


class FileHub:
    """Serves ``folder`` at ``/datasets/<repo>/resolve/<revision>/<path>`` and records each request's
    ``Authorization`` header."""

    def __init__(self, folder: Path, revision: str):
        self.seen: list[tuple[str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                hub.seen.append((self.path, self.headers.get("Authorization")))
                prefix = f"/datasets/{REPO}/resolve/{revision}/"
                file = folder / self.path[len(prefix):]
                if not self.path.startswith(prefix) or not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hubs(release_folder, monkeypatch):
    from huggingface_hub import constants

    hub, other = FileHub(release_folder, "v2.1.0"), FileHub(release_folder, "v2.1.0")
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    yield hub, other
    hub.close()
    other.close()


def test_hf_urls_and_resolve_urls_stream_the_local_rows_with_the_token_on_the_hub_only(hubs, release_folder):
    hub, other = hubs
    expected = [canonical(r) for r in stream_finer(release_folder, "questions", split="test", decode=False)]
    pattern = f"hf://datasets/{REPO}@v2.1.0/data/test-{{00000..00003}}.tar"
    assert hub_url(pattern.replace("{00000..00003}", "00001")) == \
        f"{hub.url}/datasets/{REPO}/resolve/v2.1.0/data/test-00001.tar"
    assert [canonical(r) for r in stream_finer(pattern, "questions", decode=False)] == expected
    assert len(hub.seen) == 4 and {auth for _, auth in hub.seen} == {"Bearer hf_test_token"}
    resolve = f"{other.url}/datasets/{REPO}/resolve/v2.1.0/data/test-{{00000..00003}}.tar"
    assert [canonical(r) for r in stream_finer(resolve, "questions", decode=False)] == expected
    assert len(other.seen) == 4 and {auth for _, auth in other.seen} == {None}  # another host gets no token


def test_http_errors_and_bad_hub_urls_are_one_line(hubs):
    hub, _ = hubs
    missing = f"hf://datasets/{REPO}@v9.9.9/data/test-00000.tar"
    with pytest.raises(SourceError, match=re.escape(f"file {hub.url}/datasets/{REPO}/resolve/v9.9.9/data/test-00000.tar: "
                                                    "cannot download the shard: HTTP 404")):
        list(stream_finer(missing, "questions"))
    with pytest.raises(SourceError, match="cannot download the shard: .*onnect"):
        list(stream_finer("http://127.0.0.1:9/data/test-00000.tar", "questions"))
    with pytest.raises(UsageError, match="not a Hub dataset URL; write hf://datasets/<owner>/<name>@<revision>/<path>"):
        stream_finer("hf://models/someone/model/data.tar", "questions")


STREAM = """
import json, sys
from finer_datasets import stream_finer
rows = stream_finer(sys.argv[1], "questions", decode=False)
print(json.dumps([[r["question_id"], r["options"], len(r["image"]["bytes"])] for r in rows]))
"""


def card_block(card: str) -> str:
    """The python block of the card's "Stream with webdataset" paragraph."""
    after = card[card.index("**Stream with webdataset.**"):]
    return re.search(r"```python\n(.*?)\n```", after, re.S)[1]


def test_the_card_streams_the_tagged_release_from_a_hub_with_webdataset_alone(tmp_path, release_folder):
    card = (release_folder / "README.md").read_text()
    code = card_block(card)
    assert f'url = "https://huggingface.co/datasets/{REPO}/resolve/v2.1.0/data/test-{{00000..00003}}.tar"' in code
    release(release_folder, to=tmp_path / "mirrors" / "datasets" / REPO)
    local = [(r["__key__"], r["json"]) for r in stream_finer(release_folder, split="test")]
    with olah_server(tmp_path, REPO) as url:
        env = hub_env(url, tmp_path / "hf-home")
        script = code.replace("https://huggingface.co", url) + "\n    seen.append([sample['__key__'], record, image.size])\n"
        script = "import json\nseen = []\n" + script + "print(json.dumps(seen))\n"
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        assert [(key, record) for key, record, _ in seen] == local and {tuple(s) for *_, s in seen} == {(320, 240)}
        hf = f"hf://datasets/{REPO}@v2.1.0/data/test-{{00000..00003}}.tar"
        run = subprocess.run([sys.executable, "-c", STREAM, hf], capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
    expected = [[r["question_id"], r["options"], len(r["image"]["bytes"])]
                for r in stream_finer(release_folder, "questions", split="test", decode=False)]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == expected
