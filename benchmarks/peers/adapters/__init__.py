"""One module per system under test; see `benchmarks/peers/README.md` for what a module defines."""
