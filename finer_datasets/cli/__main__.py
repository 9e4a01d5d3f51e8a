import sys

from finer_datasets.cli import main

sys.exit(main())
