"""Feature executors: one per engine, each compiled from the same IR."""
