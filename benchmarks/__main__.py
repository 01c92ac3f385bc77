"""`python -m benchmarks`: run the suite (see benchmarks/run.py, or pass --help)."""
from .run import main

raise SystemExit(main())
