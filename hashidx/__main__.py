"""`python -m hashidx` runs the command line."""

from .cli import main

main()
