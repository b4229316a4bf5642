"""HTTP layer: app factory, routes, views, middlewares."""
