"""`python -m corral.cli`: how `corral worker --processes N` starts its children."""

from corral.cli import main

main()
