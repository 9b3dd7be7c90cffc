"""``python -m airflow_provider_aac.testing.simulator``: serve until SIGTERM or Ctrl-C."""

import sys

from airflow_provider_aac.testing.simulator.cli import main

sys.exit(main())
