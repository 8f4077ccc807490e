"""The reference applications: small programs on corral's public API (see each package)."""
