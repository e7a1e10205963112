"""Entry points and the composition root: CLI, HTTP server and front door, settings, wiring."""
