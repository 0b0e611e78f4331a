import sys

from .cli import main
from .ranks import end_process

sys.exit(end_process(main()))
