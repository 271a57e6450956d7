"""Real-time serving: `mlspec serve` (app), request schemas from the spec, champion hot reload,
Prometheus metrics and the prediction log. See app.py for the endpoints."""
