"""``python -m roadmap``: the same as the ``roadmap`` command."""

from roadmap.cli.main import main

raise SystemExit(main())
