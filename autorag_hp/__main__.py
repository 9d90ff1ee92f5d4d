import sys

from autorag_hp.cli import main

sys.exit(main())
