"""A local stand-in for the Hugging Face Hub API (the endpoints `create_repo`, `upload_folder`, `snapshot_download` and
`hf_hub_download` use), so push and download are tested offline: point `huggingface_hub.constants.ENDPOINT` at
`FakeHub().endpoint` after `thread.start()`."""

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    """The four Hub endpoints `create_repo` + `upload_folder` use; keeps every repo's files in memory."""

    def __init__(self):
        self.repos = {}  # (repo_type, repo_id) -> {path: bytes}
        self.created = []  # (repo_type, repo_id, visibility)
        self.shas = {}  # (repo_type, repo_id) -> last commit sha
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, payload, status=200):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/api/whoami-v2"):
                    return self._reply({"name": "tester", "type": "user", "orgs": [], "auth": {}})
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[0] == "api" and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                    repo_id = f"{parts[2]}/{parts[3]}"
                    if (parts[1][:-1], repo_id) not in hub.shas:
                        self.send_response(404)
                        self.send_header("X-Error-Code", "RepoNotFound")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return None
                    files, sha = hub.repos[(parts[1][:-1], repo_id)], hub.shas[(parts[1][:-1], repo_id)]
                    if parts[4] == "revision":  # repo_info, as snapshot_download asks for it
                        return self._reply({"id": repo_id, "sha": sha, "siblings": [{"rfilename": p} for p in files]})
                    folder = "/".join(parts[6:])  # tree/{rev}/{folder}: the files under that folder, as the Hub lists
                    listing = [
                        {"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                        for p, c in files.items()
                        if not folder or p.startswith(folder + "/")
                    ]
                    if folder and not listing:
                        return self._reply({"error": f"{folder} does not exist"}, 404)
                    return self._reply(listing)
                if len(parts) > 4 and parts[2] == "resolve":  # file download: /{ns}/{name}/resolve/{rev}/{path}
                    repo_id = f"{parts[0]}/{parts[1]}"
                    content = hub.repos.get(("model", repo_id), {}).get("/".join(parts[4:]))
                    if content is None:  # what the Hub answers, so that clients treat it as "no such file"
                        code = "EntryNotFound" if ("model", repo_id) in hub.repos else "RepoNotFound"
                        self.send_response(404)
                        self.send_header("X-Error-Code", code)
                        self.send_header("X-Error-Message", f"{code}: {self.path}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return None
                    self.send_response(200)
                    self.send_header("X-Repo-Commit", hub.shas[("model", repo_id)])
                    self.send_header("ETag", f'"{hashlib.sha1(content).hexdigest()}"')
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    if self.command == "GET":
                        self.wfile.write(content)
                    return None
                self._reply({"error": "not found"}, 404)

            do_HEAD = do_GET

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = self.path.split("?")[0].strip("/").split("/")  # api, models, ns, name, action, rev
                if parts[:3] == ["api", "repos", "create"]:
                    request = json.loads(body)
                    repo_type = request.get("type") or "model"
                    repo_id = f"{request.get('organization') or 'tester'}/{request['name']}"
                    hub.created.append((repo_type, repo_id, request.get("visibility", "public")))
                    hub.repos.setdefault((repo_type, repo_id), {})
                    return self._reply({"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})
                if parts[:2] == ["api", "validate-yaml"]:
                    return self._reply({"errors": [], "warnings": []})
                repo_type, repo_id, action = parts[1][:-1], f"{parts[2]}/{parts[3]}", parts[4]
                if action == "preupload":
                    files = json.loads(body)["files"]
                    # "regular": contents come base64-encoded inside the commit (no LFS / xet storage needed).
                    return self._reply(
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                    )
                if action == "commit":
                    repo = hub.repos[(repo_type, repo_id)]
                    for line in body.decode().splitlines():
                        entry = json.loads(line)
                        if entry["key"] == "file":
                            repo[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
                    oid = hub.shas[(repo_type, repo_id)] = hashlib.sha1(body).hexdigest()
                    return self._reply(
                        {
                            "commitUrl": f"{hub.endpoint}/{repo_id}/commit/{oid}",
                            "commitOid": oid,
                            "pullRequestUrl": None,
                        }
                    )
                self._reply({"error": f"unexpected {self.path}"}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
