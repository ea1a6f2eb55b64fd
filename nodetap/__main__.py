import sys

from nodetap.cli import main

sys.exit(main())
