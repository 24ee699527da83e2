"""State on disk: the checkpoint that lets accrued counters survive an exporter restart."""
