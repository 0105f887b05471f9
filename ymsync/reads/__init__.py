"""Stock reads, warehouse directories and reconciliation."""
