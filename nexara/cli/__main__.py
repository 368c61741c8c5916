"""``python -m nexara.cli`` runs the command line (the tests call it so)."""

from nexara.cli.app import main

raise SystemExit(main())
