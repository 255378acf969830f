"""export/: checkpoint -> validated mobile artifact folders. See api.export_model and formats/."""
