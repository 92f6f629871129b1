"""``python -m medtoken`` (also what ``torchrun -m medtoken`` runs)."""

from medtoken.cli.main import main

raise SystemExit(main())
