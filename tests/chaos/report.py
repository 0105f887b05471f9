"""Render docs/RELIABILITY.md from the chaos suite's figures (``build/chaos/*.json``).

    .venv/bin/python -m pytest tests/chaos && .venv/bin/python tests/chaos/report.py

The document is generated, never typed: every number in it comes from the JSON a chaos case
wrote when it last ran. ``--check`` fails if a case's figures are missing or did not pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.chaos.figures import ROOT, report_dir  # noqa: E402

COMMAND = ".venv/bin/python -m pytest tests/chaos && .venv/bin/python tests/chaos/report.py"
# (figures file, section heading, the figure the summary table shows)
CASES: list[tuple[str, str, str]] = [
    ("ten_sigkills_during_a_100k_sku_load", "1. Ten SIGKILLs during a 100,000-SKU load", "recovered_after_last_kill_s"),
    ("redis_crash_with_aof_loses_nothing_acknowledged", "2a. Redis crash, AOF on", "converged_after_restart_s"),
    ("redis_restart_without_persistence_loss_is_measured", "2b. Redis crash, persistence off", "lost"),
    ("500s_lost_replies_423s_and_latency_at_once", "3. Market faults at once", "requests_per_applied_request"),
    ("foreign_quota_storm_and_held_parallel_slots", "4. Foreign quota storm and held parallel slots",
     "storm_requests_between_first_420_and_until"),
    ("poison_sku_in_a_full_batch_under_faults", "5. A poison SKU in a full batch, under faults", "delivered"),
    ("a_worker_fed_garbage_messages_keeps_running", "6. Fuzzing and garbage messages", "hypothesis_examples"),
    ("the_token_never_leaks_and_flower_needs_credentials", "7a. Secret hygiene and Flower auth", "token_hits"),
    ("downloads_and_archives_stay_contained", "7b. Downloads and archives", "files_written_outside"),
    ("late_applied_requests_never_overwrite_newer_values", "8. Requests that land after the client gave up",
     "stale_writes"),
    ("messages_run_shuffled_and_twice_the_newest_by_enqueue_time_wins",
     "9. Update messages run shuffled and twice (stamps at enqueue)", "stale_writes"),
    ("a_worker_clock_10s_ahead_of_the_market_loses_nothing", "10. Every worker's clock 10 s ahead of the Market's",
     "stale_writes"),
    ("a_refused_token_halts_probes_and_then_delivers_everything",
     "11. A token refused (401) while the halted campaign probes, then working again", "delivered_s_after_restore"),
    ("report_job_survives_a_killed_reports_worker", "12. A reports worker SIGKILLed mid-poll", "finished_s_after_heir_up"),
    ("v3_waves_over_two_warehouses_with_late_applies", "13. v3 (business) targets: waves over two warehouses, late "
     "applies", "stale_writes"),
    ("rabbitmq_restart_under_load_loses_nothing_acknowledged-stop", "14a. RabbitMQ broker stopped and started "
     "again mid-load", "converged_after_restart_s"),
    ("rabbitmq_restart_under_load_loses_nothing_acknowledged-crash", "14b. RabbitMQ broker SIGKILLed and started "
     "again mid-load", "converged_after_restart_s"),
    ("40k_updates_over_8_campaigns_through_a_master_failover", "15. A Redis Cluster master SIGKILLed under a "
     "40,000-update load, a CLI wave during the failover", "lost"),
    ("a_worker_host_cut_off_mid_flight", "16a. A worker host (network namespace) cut off mid-flight for longer "
     "than a lease", "everything_delivered_s_after_cut"),
    ("only_the_path_to_the_market_cut", "16b. Only one host's path to the Market cut, Redis reachable",
     "everything_delivered_s_after_cut"),
    ("a_request_queued_in_a_cut_hosts_kernel_never_lands_late", "16c. A request queued in a cut host's kernel "
     "when the link went down", "stale_writes"),
]

LIMITS = """\
## What is lost, and when (read this before relying on the figures)

- **Worker crashes (SIGKILL, OOM, power loss of a worker machine) lose nothing.** A batch in flight
  stays leased in Redis; when the lease runs out its SKUs return to the buffer unless a newer value
  arrived meanwhile. The lease is `YM_UNKNOWN_OUTCOME_S + YM_LEASE_MARGIN_S` (the request may still
  land until then; the margin is 10 s by default: 4 s in case 1's runs, which set 2 + 2, 12 s in the
  others, **135 s with the defaults**), and the scheduler looks at the campaign the moment it runs
  out. A killed flush task's slot frees after one request's deadline + `YM_LEASE_MARGIN_S`.
- **A batch may be sent twice, never an older value over a newer one.** A request whose outcome is
  unknown (timeout, dropped reply, 5xx, 423) keeps its SKUs in flight until it can no longer land
  (`YM_UNKNOWN_OUTCOME_S` after it was sent), then the newest value is sent: values are sent again
  (the `skus_sent_per_distinct_sku` / `requests_per_ideal` figures show the cost), never overtaken.
  `stale_writes`, counted by the sandbox whenever an update older than the stored one arrives,
  stayed 0 in every case; case 8 shows the counter works (6,000 stale writes with the hold
  switched off, 0 with it).
- **The bound is a promise about the Market.** If the Market applies a request later than
  `YM_UNKNOWN_OUTCOME_S` after it was sent, an older value can still land over a newer one; raise
  the setting if your Market (or proxy) keeps requests longer.
- **Redis with AOF (`appendfsync everysec`, as docker-compose runs it) loses nothing acknowledged
  when the Redis *process* dies**: what `push_stocks` acknowledged is in the AOF file already. An
  operating-system crash or power loss of the Redis machine can lose up to the last second of writes,
  which everysec does not fsync yet (`appendfsync always` closes that gap at a throughput cost);
  this suite does not simulate a kernel crash.
- **Redis without persistence loses everything it held when it restarts**: every value pushed but
  not yet delivered, the flush schedule, dead letters and the "last delivered" memory (so the next
  push of an unchanged value is sent again). The figures of case 2b measure it for one load; the
  loss is bounded by what was pending at the moment of the restart. Run Redis with AOF.
- **A RabbitMQ restart or crash loses nothing acknowledged** (cases 14a/b): `stocks` and `reports`
  are quorum queues (on disk before the publisher confirm), so a message `send_updates` or the
  scheduler got a confirm for survives; a send cut by the outage raises `Unavailable`
  (`maybe_queued` when its publish had left: the message may be there, and a re-send is safe).
  Should a broker lose a flush message all the same (a purged queue, a delivery limit), its task
  slot frees 60 s after it was claimed and the scheduler sends the target again.
- **A worker host cut off from the network loses nothing** (cases 16a-c, worker hosts in network
  namespaces): its batches come back to the buffer when their lease runs out and the other hosts
  deliver them; when it returns it sends nothing twice beyond its own batch. A host that reaches
  Redis but not the Market times out (outcome unknown) and the others deliver. The client closes
  a connection it gave up on with an RST, so a request written into a link that had just gone
  down is dropped by its kernel, not retransmitted once the link is back (case 16c; before that
  fix, every SKU of such a request landed over its newer value once the link was back).
- **Nothing scheduled lives in the broker**: due times are in Redis (AOF keeps them), so a Redis
  restart or a killed worker leaves no work waiting for the broker's 6 h visibility timeout.
"""


def load(directory: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {cell(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def render(figures: dict[str, dict[str, Any]]) -> str:
    cases = [(name, heading, key) for name, heading, key in CASES if heading and name in figures]
    total = sum(figures[name]["duration_s"] for name, _, _ in cases)
    latest = max((figures[name]["finished_at"] for name, _, _ in cases), default="never")
    host = next((figures[name]["host"] for name, _, _ in cases), {})
    lines = [
        "# Reliability",
        "",
        "<!-- Generated by tests/chaos/report.py from build/chaos/*.json: do not edit by hand. -->",
        "",
        "What the chaos suite (`tests/chaos/`) did to ymsync on its latest run, and what it measured. "
        "Every case loads a known stream of updates through the real producer path (`push_stocks`), "
        "real prefork Celery workers, a private `redis-server` and the Market sandbox over HTTP "
        "(loopback only), then compares the sandbox's final stock (`/_admin/stocks/{campaign}`) with "
        "the latest intended value of every SKU, and checks `stale_writes == 0` (no older value ever "
        "overwrote a newer one at the Market).",
        "",
        f"Reproduce: `{COMMAND}`  ",
        "Run only the chaos suite: `.venv/bin/python -m pytest tests/chaos` "
        "(it is also part of the default `.venv/bin/python -m pytest`).",
        "",
        f"Latest run: {latest}, {host.get('cpus', '?')} CPUs, Python {host.get('python', '?')}, "
        f"{host.get('system', '?')}; the cases took {total:.0f} s together.",
        "",
        "| case | passed | lost | stale writes | headline figure | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, heading, key in cases:
        f = figures[name]["figures"]
        lines.append(f"| {heading} | {'yes' if f.get('passed') else '**NO**'} | {cell(f.get('lost', '-'))} | "
                     f"{cell(f.get('stale_writes', '-'))} | {key}: {cell(f.get(key, '-'))} | "
                     f"{figures[name]['duration_s']:g} |")
    lines.append("")
    for name, heading, _ in cases:
        data = figures[name]
        lines += [f"## {heading}", "", f"*{data['title']}* (`{name}`, {data['duration_s']:g} s)", ""]
        if not data["figures"].get("passed"):
            lines += ["**This case FAILED on that run: its figures below are those of a failed run, "
                      "measured up to where it failed, and prove nothing.**", ""]
        if data["checks"]:
            lines += ["Held:", ""] + [f"- {c}" for c in data["checks"]] + [""]
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [f"| {k} | {cell(v)} |" for k, v in data["figures"].items() if k != "passed"]
        lines.append("")
    lines.append(LIMITS)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=report_dir(), help="folder of the chaos JSON files")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "RELIABILITY.md")
    parser.add_argument("--check", action="store_true", help="fail unless every case has passing figures")
    args = parser.parse_args(argv)
    figures = load(args.figures)
    missing = [n for n, heading, _ in CASES if heading and not figures.get(n, {}).get("figures", {}).get("passed")]
    if args.check and missing:
        print(f"chaos figures missing or failing: {', '.join(missing)}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(figures), encoding="utf-8")
    print(f"wrote {args.out} from {len(figures)} figure file(s) in {args.figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
