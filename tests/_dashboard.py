"""An optuna-dashboard on loopback, for the tests that serve a storage through one."""

import json
import socket
import time
import urllib.request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dashboard_studies(port: int) -> list[dict]:
    """The study summaries a dashboard on loopback serves, once it answers (within 60 s)."""
    for _ in range(120):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                return json.load(r)["study_summaries"]
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no dashboard answered on port {port}")
