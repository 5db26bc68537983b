"""Built-in passes. Each module registers its classes with ``quiver.optimize.registry.register``."""
