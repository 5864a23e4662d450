"""``python -m repro``: the command line (:mod:`repro.cli`)."""

from repro.cli import main

raise SystemExit(main())
