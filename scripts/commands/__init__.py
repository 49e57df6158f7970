"""CLI command modules; each exposes ``register(app)``. scripts.cli.COMMANDS lists them."""
