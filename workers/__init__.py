"""Worker launch profiles per queue (see ``workers/*.sh`` and docker-compose.yml)."""
