#!/usr/bin/env sh
# ymsync_celery.tasks is the installed name of the repository's tasks/ (pip install, the image):
# it works from any folder, and a shop's own `tasks` module in that folder cannot shadow it.
# Stock push workers: short tasks that wait on the shared quota, so many light slots.
# Scale out with more processes or machines; the quota is shared through Redis.
exec celery -A ymsync_celery.tasks worker -Q stocks -n "stocks@%h" \
  --concurrency "${YM_STOCKS_CONCURRENCY:-4}" --prefetch-multiplier 1 -E \
  --loglevel "${YM_LOGLEVEL:-INFO}" "$@"
