#!/usr/bin/env python3
"""An example rotator for the hook strategy (README: Rotating secrets), for `make dev`.

Coffer's leader POSTs {"secret", "run", "token", "alias"} for each rotation run; this rotator
makes a new random value (a real one would set it in the database or service first), writes it
as the run's PENDING version with the `coffer` CLI, and answers 200 once it landed (500 with the
CLI's error otherwise). It listens on loopback over plain http, which Coffer accepts only for a
loopback rotator; a production rotator serves https.

    source .coffer-dev/env
    python3 scripts/example_rotator.py --port 7700 &
    coffer secret create acme/dev/db-password --rotation-period 1m --overlap 10s \
        --hook-url http://127.0.0.1:7700/rotate
"""

import argparse
import http.server
import json
import os
import secrets
import subprocess
import sys


class Rotator(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/rotate":
            return self.answer(404, "not here")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            call = json.loads(self.rfile.read(min(length, 65536)))
            name, run, token = call["secret"], int(call["run"]), call["token"]
        except (ValueError, KeyError, TypeError) as e:
            return self.answer(400, f"bad call: {e}")
        value = secrets.token_urlsafe(32)
        env = dict(os.environ, COFFER_ROTATION_TOKEN=token)
        put = subprocess.run(
            ["coffer", "secret", "put", name, "--rotation-run", str(run), "--value-file", "-"],
            input=value.encode(),
            env=env,
            capture_output=True,
            timeout=20,
        )
        if put.returncode != 0:
            why = put.stderr.decode(errors="replace").strip().splitlines()[:1]
            print(f"run {run} of {name}: put refused: {why}", file=sys.stderr)
            return self.answer(500, f"put refused: {why}")
        print(f"run {run} of {name}: wrote a new PENDING value", file=sys.stderr)
        return self.answer(200, "ok")

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=7700)
    a = p.parse_args()
    http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Rotator).serve_forever()


if __name__ == "__main__":
    main()
