import sys

from waveflow.cli import main

sys.exit(main())
