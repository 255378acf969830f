"""Export formats: one module each, registered with pocketbert.export.registry.register_format."""
