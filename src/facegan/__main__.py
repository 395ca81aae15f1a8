"""`python -m facegan ...` (also `torchrun --nproc_per_node N -m facegan train ...`)."""
import os
import sys

from facegan.cli.main import main


def _torchrun_worker() -> bool:
    """Started by torch.distributed.run (what `facegan train --nproc-per-node` uses) as one rank of several."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ("LOCAL_RANK" in os.environ and os.environ.get("WORLD_SIZE", "1") not in ("", "1"))


code = main()
if _torchrun_worker():
    # The run is written and the process group left (shutdown_distributed). At interpreter exit gloo's C++ threads can
    # still abort the process ("terminate called without an active exception", SIGABRT), which torchrun reports as
    # a failed run and answers by killing the other ranks: a worker leaves without running the C++ destructors.
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
