"""`python -m bench`: run the benchmark (`--help` for options)."""

from bench.run import main

main()
