"""``ymsync metrics``: a Prometheus exporter for ymsync's own numbers (read from Redis per scrape)."""

from __future__ import annotations

import signal
import sys
import threading

import click

from ymsync.cli import main


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 to let a Prometheus on another host scrape it).")
@click.option("--port", default=9808, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free one.")
def metrics(host: str, port: int) -> None:
    """Serve ymsync's metrics on http://HOST:PORT/metrics until Ctrl-C or SIGTERM."""
    from prometheus_client import start_http_server

    from ymsync.metrics import registry_for
    from ymsync.config.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        server, thread = start_http_server(port, addr=host, registry=registry_for(settings))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(f"ymsync metrics on http://{host}:{server.server_port}/metrics (Redis {_safe(settings.redis_url)})")
    sys.stdout.flush()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.shutdown()
    click.echo("ymsync metrics stopped")


def _safe(url: str) -> str:
    """The Redis URL without a password, for the start line."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
