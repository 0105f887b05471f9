#!/usr/bin/env sh
# Report and stock-read workers: own queue, so polling never waits behind a stock backlog.
exec celery -A tasks worker -Q reports -n "reports@%h" \
  --concurrency "${YM_REPORTS_CONCURRENCY:-2}" --prefetch-multiplier 1 -E \
  --loglevel "${YM_LOGLEVEL:-INFO}" "$@"
