"""idemscope dashboard."""
