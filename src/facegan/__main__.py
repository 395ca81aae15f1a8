"""`python -m facegan ...` (also `torchrun --nproc_per_node N -m facegan train ...`)."""
import sys

from facegan.cli.main import main

sys.exit(main())
