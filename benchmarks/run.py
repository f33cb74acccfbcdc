"""Run the benchmark harness from a checkout: ``python benchmarks/run.py [--quick] [...]``.

The harness lives in the package (``wsp_async/tools/bench.py``) so that
``python -m wsp_async bench`` works wherever the package is installed; this file
only forwards to it.  See ``benchmarks/README.md`` for the modes, the targets and
the figures reached.
"""

import sys

from wsp_async.tools.bench import main

if __name__ == "__main__":
    sys.exit(main())
