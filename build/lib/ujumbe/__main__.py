import sys

from ujumbe.cli import main

sys.exit(main())
