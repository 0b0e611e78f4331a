"""``resnas dashboard`` and ``resnas storage-proxy``: servers over a storage."""

from __future__ import annotations

import click

from ..storage import DASHBOARD, StudyError, dashboard_server, mask_url, open_storage, proxy_server
from .common import UserError
from .display import say
from .options import storage_option
from .stored import readable_storage

__all__ = ["dashboard", "storage_proxy"]


@click.command()
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless you say).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
def dashboard(storage: str | None, host: str, port: int) -> None:
    """Serve the Optuna dashboard for a storage and its artifacts.

    \b
    Example:
      resnas dashboard --storage sqlite:///resnas.db --port 8080
    """
    url = readable_storage(storage)
    try:
        open_storage(url)  # optuna-dashboard opens an RDB URL itself, with a traceback if it cannot: first ours
        serve = dashboard_server(url, host, port)
        say(f"{DASHBOARD} on http://{host}:{port} for {mask_url(serve.url)}")
        serve()
    except StudyError as e:
        raise UserError(str(e)) from None


@click.command("storage-proxy")
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless you say).")
@click.option("--port", type=click.IntRange(1, 65535), default=13000, show_default=True)
def storage_proxy(storage: str | None, host: str, port: int) -> None:
    """Serve a storage to many workers (Optuna's gRPC storage proxy); they pass --storage grpc://HOST:PORT.

    This process then holds the database connections and a cache of finished trials, however many
    workers there are. Weights and checkpoints do not go through it: they stay in each worker's
    ./resnas-artifacts (a shared folder across machines). No authentication, no TLS: bind a private address.

    \b
    Example:
      resnas storage-proxy --storage postgresql://user@db-host/resnas --host 10.0.0.2 --port 13000
      resnas search --storage grpc://10.0.0.2:13000 --workers 4
    """
    try:
        serve = proxy_server(storage, host, port)
        say(f"storage-proxy on grpc://{host}:{port} for {mask_url(serve.url)} (Ctrl-C stops it)")
        serve()
    except StudyError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:  # a server's normal end: not an interrupted trial (main's message)
        say("storage-proxy stopped")
