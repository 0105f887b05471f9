"""``ymsync sandbox``: run the local Market emulator."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from ymsync.config.settings import SettingsError, parse_quota
from ymsync.cli import main


_QUOTA_NAMES = {
    "update-stocks": "updateStocks",
    "get-stocks": "getStocks",
    "report-generate": "generateStocksOnWarehousesReport",
    "report-info": "getReportInfo",
    "update-stocks-v3": "updateStocksOnPartnerWarehouses",
    "get-stocks-v3": "getStocksOnPartnerWarehouses",
    "warehouses-v3": "getPartnerWarehouses",
    "stocks-report-v3": "generateStocksReport",
}


def _parse_quota_option(raw: str) -> tuple[str, Any]:
    name, sep, value = raw.partition("=")
    if not sep or name not in _QUOTA_NAMES:
        raise click.BadParameter(f"expected NAME=AMOUNT/SECONDS with NAME one of {', '.join(_QUOTA_NAMES)}; got {raw!r}")
    try:
        return _QUOTA_NAMES[name], parse_quota(f"--quota {name}", value)
    except SettingsError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep it loopback).")
@click.option("--port", default=8765, show_default=True, type=int, help="Port; 0 picks a free one.")
@click.option("--token", "tokens", multiple=True, help="Accepted API token (repeatable). Default: sandbox-token.")
@click.option("--campaign", "campaigns", multiple=True, metavar="ID[:MODEL[:BUSINESS]]",
              help="Known campaign (repeatable), e.g. 1001 or 1002:FBY:7. Default: any id is an FBS campaign.")
@click.option("--business", "businesses", multiple=True, metavar="ID[:groups]:WID[=PROGRAM[/AVAILABILITY]][,...]",
              help="Known business and its warehouses (repeatable), e.g. 7:11,12=EXPRESS or 8:groups:21. "
                   "Default: any business exists, without warehouse groups, with any warehouse.")
@click.option("--quota", "quotas", multiple=True, metavar="NAME=AMOUNT/SECONDS",
              help="Override a quota (update-stocks, get-stocks, report-generate, report-info, update-stocks-v3, "
                   "get-stocks-v3, warehouses-v3, stocks-report-v3); 0 = off.")
@click.option("--max-parallel", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--report-delay", default=3.0, show_default=True, type=float, help="Seconds a report takes.")
@click.option("--link-ttl", default=3600.0, show_default=True, type=float, help="Seconds a file link lives.")
@click.option("--error-rate", default=0.0, type=click.FloatRange(0, 1), help="Share of calls answered 500.")
@click.option("--lost-reply-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of calls applied but never answered.")
@click.option("--latency-ms", default=0.0, type=float, help="Maximum random latency per call.")
@click.option("--state-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep stock and archived offers in this file across restarts (loaded at start, "
                   "saved after each change). Default: in memory only.")
def sandbox(host: str, port: int, tokens: tuple[str, ...], campaigns: tuple[str, ...], businesses: tuple[str, ...],
            quotas: tuple[str, ...],
            max_parallel: int, report_delay: float, link_ttl: float, error_rate: float,
            lost_reply_rate: float, latency_ms: float, state_file: Path | None) -> None:
    """Run the local Market sandbox (a real HTTP server) until Ctrl-C or SIGTERM."""
    from ymsync.sandbox import DEFAULT_QUOTAS, CampaignConfig, Faults, MarketSandbox, SandboxConfig

    try:
        parsed = tuple(CampaignConfig.parse(c) for c in campaigns)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--campaign") from None
    from ymsync.sandbox.business_state import BusinessConfig

    try:
        cabinets = tuple(BusinessConfig.parse(b) for b in businesses)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--business") from None
    config = SandboxConfig(
        businesses=cabinets,
        tokens=tokens or ("sandbox-token",),
        campaigns=parsed,
        quotas={**DEFAULT_QUOTAS, **dict(_parse_quota_option(q) for q in quotas)},
        max_parallel=max_parallel,
        faults=Faults(error_rate=error_rate, lost_reply_rate=lost_reply_rate, latency_max_ms=latency_ms),
        report_delay_s=report_delay,
        link_ttl_s=link_ttl,
    )
    try:
        market = MarketSandbox(host, port, config)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    except (SettingsError, RuntimeError) as exc:  # YM_SANDBOX_SPEC_CHECK: a bad path, no test extra
        raise click.ClickException(str(exc)) from None

    saver = None
    if state_file is not None:
        from ymsync.sandbox.persist import StateFile, StateFileError

        saver = StateFile(market.state, state_file)
        try:
            loaded = saver.start()
        except StateFileError as exc:
            market.stop()
            raise click.ClickException(str(exc)) from None

    def stop(signum: int, frame: object) -> None:
        # shutdown() blocks until serve_forever returns, so it must run off the serving thread.
        threading.Thread(target=market.server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"Market sandbox listening on {market.url}")
    click.echo(f"  point ymsync at it: YM_API_URL={market.url} YM_API_KEY={config.tokens[0]}")
    if saver is not None:
        click.echo(f"  state file {state_file}: {loaded} SKUs loaded")
    sys.stdout.flush()
    try:
        market.serve_forever()
    finally:
        market.stop()
        if saver is not None:
            saver.close()
        click.echo("Market sandbox stopped")

