"""The stock engine: targets, buffer, quota, schedule, flusher, producer."""
