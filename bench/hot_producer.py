"""The producer process of benchmark 13 (``bench/hotpath.py``): a shop backend calling ``push_stocks``.

Run by the bench as ``python -c "import runpy, sys; sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name="__main__")"
THIS_FILE ...`` with its working directory (and PYTHONPATH) at the checkout being measured, so
``ymsync`` is that checkout's code, not necessarily this file's. It imports nothing from ``bench``.

Arguments: ``MODE CHUNK PER_CAMPAIGN CAMPAIGN...``. It talks to the driver over stdin/stdout, one
line each way, so that the driver can read this process's CPU from /proc before and after:

- ``push``: imports and builds the items, prints ``ready``; on ``go`` pushes ``PER_CAMPAIGN``
  updates to every campaign in ``CHUNK``-sized ``push_stocks`` calls, round robin over the
  campaigns, prints ``{"t0", "t1"}``; then waits for stdin to close.
- ``prefill``: pushes the same updates at once and takes the campaigns' targets off the due-time
  schedule (no flush may start before the clock does), prints ``ready``; on ``go`` makes them all
  due, prints ``{"t0", "t1"}``; then waits for stdin to close. Uses the checkout's ``Schedule``
  and ``keys`` (the key layout is that code's).
"""

from __future__ import annotations

import json
import sys
import time


def _items(per_campaign: int) -> list[dict[str, object]]:
    return [{"sku": f"K-{i:08d}", "count": i % 100} for i in range(per_campaign)]


def _push(campaigns: list[int], chunk: int, items: list[dict[str, object]]) -> None:
    from ymsync import push_stocks

    for start in range(0, len(items), chunk):
        for campaign in campaigns:  # interleaved: every campaign has work from the first seconds
            push_stocks(campaign, items[start:start + chunk])


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    mode, chunk, per_campaign = argv[0], int(argv[1]), int(argv[2])
    campaigns = [int(c) for c in argv[3:]]
    items = _items(per_campaign)
    import ymsync

    if mode == "push":
        # ``ymsync`` imports its engine on first use: a shop's backend has paid that long before it
        # pushes (~0.2 s, which the measured run would otherwise count as pushing time).
        from ymsync import push_stocks  # noqa: F401

        _say("ready " + ymsync.__file__)
        assert sys.stdin.readline().strip() == "go"
        t0 = time.time()
        _push(campaigns, chunk, items)
        _say(json.dumps({"t0": t0, "t1": time.time()}))
    else:
        import redis

        from ymsync.config.settings import get_settings
        from ymsync.engine.schedule import Schedule
        from ymsync.store import keys

        _push(campaigns, chunk, items)
        client = redis.Redis.from_url(get_settings().redis_url)
        targets = [keys.campaign_target(c) for c in campaigns]
        client.zrem(keys.DUE, *targets)  # not due until the clock starts: no flush before it
        _say("ready " + ymsync.__file__)
        assert sys.stdin.readline().strip() == "go"
        t0 = time.time()
        schedule = Schedule(client)
        for target in targets:
            schedule.activate(target, 0)
        _say(json.dumps({"t0": t0, "t1": time.time()}))
    sys.stdin.read()  # stay alive (idle) until the driver has read this process's CPU


if __name__ == "__main__":
    main(sys.argv[1:])
