"""Market reports: column layouts, request planning, polling, safe unpacking and parsing."""
