"""`python -m hashidx` runs the command line."""

from hashidx.cli import main

main()
