import os
import sys

# One event loop per process: keep numpy's BLAS single-threaded (see gunicorn.conf.py).
for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas, "1")

from compere.cli import main  # noqa: E402  (after the environment is set)

sys.exit(main())
