import sys

from steering.cli.main import main

sys.exit(main())
