"""A tiny in-memory Hub API on 127.0.0.1 for testing uploads at their HTTP boundary.

It speaks the endpoints ``HfApi`` uses to create a repo, upload a folder (preupload answers
"regular" for every file, so contents arrive base64-encoded in the NDJSON commit), list refs
and trees, and create tags. Every request is recorded (method, path, headers) so tests can
assert what crossed the wire.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import yaml


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, tuple[str, str]] = field(default_factory=dict)


class FakeHub:
    def __init__(self, *, drop_paths: tuple[str, ...] = ()):
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.drop_paths = drop_paths  # simulate a broken upload: these files are not stored
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo_id: str, revision: str) -> dict[str, bytes]:
        repo = self.repos[repo_id]
        sha = repo.tags[revision][0] if revision in repo.tags else repo.branches.get(revision, revision)
        return repo.commits[sha]

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body=None) -> None:
                data = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                self._route("GET", b"")

            def do_POST(self) -> None:
                self._route("POST", self._body())

            def _route(self, method: str, body: bytes) -> None:
                path = urlparse(self.path).path
                hub.requests.append((method, path, {k.lower(): v for k, v in self.headers.items()}, body))
                if method == "POST" and path == "/api/repos/create":
                    return self._create(json.loads(body))
                if method == "POST" and path == "/api/validate-yaml":
                    return self._validate_yaml(json.loads(body))
                m = re.match(r"^/api/datasets/([^/]+/[^/]+)/(refs|preupload|commit|tag|tree)(?:/([^/]+))?(/.*)?$", path)
                if not m or m.group(1) not in hub.repos:
                    return self._reply(404, {"error": "Repository not found"})
                repo_id, action, revision = m.group(1), m.group(2), m.group(3)
                repo = hub.repos[repo_id]
                if action == "refs":
                    return self._reply(200, {
                        "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo.branches.items()],
                        "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, (c, _) in repo.tags.items()],
                        "converts": [],
                    })
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                if action == "commit":
                    return self._commit(repo, repo_id, revision, body)
                if action == "tag":
                    data = json.loads(body)
                    if data["tag"] in repo.tags:
                        return self._reply(409, {"error": "Tag already exists"})
                    sha = repo.branches.get(revision, revision)
                    repo.tags[data["tag"]] = (sha, data.get("message", ""))
                    return self._reply(200, {})
                if action == "tree":
                    sha = repo.tags[revision][0] if revision in repo.tags else repo.branches.get(revision, revision)
                    files = repo.commits.get(sha, {})
                    return self._reply(200, [
                        {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": name}
                        for name, data in sorted(files.items())
                    ])
                return self._reply(404, {})

            def _validate_yaml(self, data: dict) -> None:
                match = re.match(r"^---\n(.*?)\n---", data["content"], flags=re.S)
                try:
                    meta = yaml.safe_load(match.group(1)) if match else None
                except yaml.YAMLError as exc:
                    return self._reply(400, {"errors": [{"message": str(exc)}], "warnings": []})
                if not isinstance(meta, dict) or "configs" not in meta:
                    return self._reply(400, {"errors": [{"message": "no configs in the card"}], "warnings": []})
                return self._reply(200, {"errors": [], "warnings": []})

            def _create(self, data: dict) -> None:
                repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                if repo_id in hub.repos:
                    return self._reply(409, {"error": "You already created this dataset repo", "url": f"{hub.url}/datasets/{repo_id}"})
                hub.repos[repo_id] = Repo(private=data.get("visibility") == "private" or bool(data.get("private")))
                return self._reply(200, {"url": f"{hub.url}/datasets/{repo_id}"})

            def _commit(self, repo: Repo, repo_id: str, revision: str, body: bytes) -> None:
                parent = repo.commits.get(repo.branches.get(revision, ""), {})
                files = dict(parent)
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file" and item["value"]["path"] not in hub.drop_paths:
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] == "deletedFile":
                        files.pop(item["value"]["path"], None)
                sha = hashlib.sha1(json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()
                                   + str(len(repo.commits)).encode()).hexdigest()
                repo.commits[sha] = files
                repo.branches[revision] = sha
                return self._reply(200, {"commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{sha}", "commitOid": sha,
                                         "pullRequestUrl": None})

        return Handler
