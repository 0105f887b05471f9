"""Redis: every key ymsync uses and the buffer's Lua scripts."""
