"""The ``roadmap`` command: one module per group of verbs, imported only when its verb runs."""
