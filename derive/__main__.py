import sys

from derive.tools.cli import main

sys.exit(main())
