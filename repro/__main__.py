"""TODO docstring (from __main__)."""

from repro.cli import main


raise SystemExit(main())
