#!/usr/bin/env sh
# ymsync_celery.tasks is the installed name of the repository's tasks/ (pip install, the image):
# it works from any folder, and a shop's own `tasks` module in that folder cannot shadow it.
# Report and stock-read workers: own queue, so polling never waits behind a stock backlog.
exec celery -A ymsync_celery.tasks worker -Q reports -n "reports@%h" \
  --concurrency "${YM_REPORTS_CONCURRENCY:-2}" --prefetch-multiplier 1 -E \
  --loglevel "${YM_LOGLEVEL:-INFO}" "$@"
