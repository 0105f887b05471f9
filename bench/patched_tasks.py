"""``celery -A bench.patched_tasks worker``: ymsync's app with proposal B's buffer scripts.

The bench runs the pipeline with this app to measure the proposed ``ymsync/buffer.py`` change
(bench/proposals/buffer_batched_scripts.diff) on real worker processes without editing the file.
"""

from bench.proposals import apply_buffer_scripts

apply_buffer_scripts()

from tasks import app  # noqa: E402  (the scripts must be in place before any StockBuffer is built)

__all__ = ["app"]
