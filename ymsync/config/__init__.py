"""Configuration: settings from the environment and the cabinets file, parsed once."""
