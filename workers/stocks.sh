#!/usr/bin/env sh
# Stock push workers: short tasks that wait on the shared quota, so many light slots.
# Scale out with more processes or machines; the quota is shared through Redis.
exec celery -A tasks worker -Q stocks -n "stocks@%h" \
  --concurrency "${YM_STOCKS_CONCURRENCY:-4}" --prefetch-multiplier 1 -E \
  --loglevel "${YM_LOGLEVEL:-INFO}" "$@"
