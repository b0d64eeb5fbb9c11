"""The edge's REST routes, one module per area."""
