"""A local stand-in for the Hugging Face Hub's HTTP API: the three endpoints that
``HfApi.create_repo`` and ``HfApi.upload_folder`` call, served from a thread on 127.0.0.1.

- ``POST /api/repos/create``: records the repo (``{"name", "organization", "type", "visibility"}``);
- ``POST /api/models/USER/NAME/preupload/REV``: answers every file "regular" (no LFS / Xet
  transfer), so the commit carries each file's bytes;
- ``POST /api/models/USER/NAME/commit/REV``: the NDJSON commit; records its files' bytes;
- ``POST /api/validate-yaml`` (upload_folder's check of a README.md's metadata): accepts front
  matter that is a YAML mapping with ``library_name`` and a list of string ``tags``, records it.

Any other POST is answered 404 and recorded in ``unexpected``, a GET 404 in ``lookups``; ``FakeHub(refuse=401)`` answers
every request with that status instead, as the Hub does a bad token.  Point huggingface_hub at it with
``HF_ENDPOINT`` (a subprocess) or ``huggingface_hub.constants.ENDPOINT`` (this process).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

COMMIT_OID = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, refuse: int | None = None) -> None:
        self.repos: list[dict] = []  # create_repo payloads
        self.commits: list[dict] = []  # {"repo_id", "revision", "summary", "files": {path: bytes}}
        self.tokens: list[str] = []  # the Authorization header of every request
        self.unexpected: list[str] = []
        self.validated: list[dict] = []  # the README metadata validate-yaml accepted
        self.lookups: list[str] = []  # GET requests, answered 404
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # best-effort look-ups (huggingface_hub's agent-harness registry): none here
                hub.lookups.append(self.path)
                self._reply(404, {"error": "not faked"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.tokens.append(self.headers.get("Authorization", ""))
                path = self.path.split("?", 1)[0]
                if refuse is not None:
                    return self._reply(refuse, {"error": "Invalid credentials in Authorization header"})
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    hub.repos.append(payload)
                    repo_id = f"{payload.get('organization') or 'me'}/{payload['name']}"
                    return self._reply(200, {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})
                if path == "/api/validate-yaml":
                    text = json.loads(body)["content"]
                    front = text.split("---\n")[1] if text.startswith("---\n") else ""
                    metadata = yaml.safe_load(front) if front else None
                    if not (isinstance(metadata, dict) and isinstance(metadata.get("library_name"), str)
                            and all(isinstance(t, str) for t in metadata.get("tags", []))):
                        return self._reply(400, {"errors": [{"message": "metadata: no valid YAML front matter"}]})
                    hub.validated.append(metadata)
                    return self._reply(200, {"errors": [], "warnings": []})
                if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
                if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    header = next(item["value"] for item in lines if item["key"] == "header")
                    files = {item["value"]["path"]: base64.b64decode(item["value"]["content"])
                             for item in lines if item["key"] == "file"}
                    hub.commits.append({"repo_id": match[1], "revision": match[2], "summary": header["summary"],
                                        "files": files, "other": [i for i in lines if i["key"] not in ("header", "file")]})
                    return self._reply(200, {"commitUrl": f"{hub.endpoint}/{match[1]}/commit/{COMMIT_OID}",
                                             "commitOid": COMMIT_OID, "pullRequestUrl": None})
                hub.unexpected.append(f"POST {self.path}")
                return self._reply(404, {"error": "not faked"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
