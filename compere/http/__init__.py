"""HTTP layer: app factory, route table, thin views, middlewares, OpenAPI."""
