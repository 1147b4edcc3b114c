"""Start claude-code-proxy from a source checkout: `python start_proxy.py`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from claude_code_proxy.cli import main

if __name__ == "__main__":
    main()
