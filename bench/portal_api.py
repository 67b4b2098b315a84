"""The portal's REST API as the benchmarks drive it: the standard library
only, so that any python runs it. The scripts import it with PYTHONPATH set
to this folder (bench/lib.sh says so)."""

import json
import time
import urllib.error
import urllib.request


class Portal:
    """A portal at `url` (http://127.0.0.1:PORT)."""

    def __init__(self, url):
        self.url = url

    def call(self, method, path, body=None):
        """The JSON answer to `method path` with `body`; an error answer
        ends the script with its status and body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise SystemExit(f"{method} {path}: {error.code} {error.read().decode()}")

    def attempt(self, method, path, body=None, waiting_for="InvalidInstanceId"):
        """`call`, but None when the portal answers with an error that
        names `waiting_for` (a Run Command to an instance whose SSM agent
        has not registered yet): something to ask again."""
        try:
            return self.call(method, path, body)
        except SystemExit as error:
            if waiting_for in str(error):
                return None
            raise

    def up(self):
        """Its health, or None while it does not answer."""
        try:
            return self.call("GET", "/healthz")
        except Exception:
            return None

    def finished(self, job):
        """The job once it is done, failed or cancelled; False before."""
        j = self.call("GET", f"/api/v1/jobs/{job}")
        return j["status"] in ("done", "failed", "cancelled") and j


def wait(what, check, limit, every=0.5):
    """What `check` returns once it is truthy, asked every `every` seconds;
    after `limit` seconds the script ends saying what it waited for."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")
