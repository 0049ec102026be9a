"""HTTP in, HTTP out: routers translate between the wire and the services."""
