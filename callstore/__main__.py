import sys

from callstore.cli import main

sys.exit(main())
