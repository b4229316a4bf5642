import sys

from compere.cli import main

sys.exit(main())
