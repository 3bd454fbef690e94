"""Route handlers, one module per resource; the route table is :mod:`entrypoints.http.routes`."""
