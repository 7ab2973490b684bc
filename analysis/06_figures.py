"""Step 6 - draw every publication figure (delegates to paper_figures/make_figures.py).

    python analysis/06_figures.py [DATA.nc] [--out figures/] [--bootstrap 500]
    python analysis/06_figures.py --synthetic --out figures/synthetic

Figures the data cannot support yet (no MemFT cells, too few ranks for a fit) are skipped
with the reason in the log and in <out>/INDEX.md.
"""

import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
    sys.argv[0] = os.path.join(ROOT, "paper_figures", "make_figures.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
