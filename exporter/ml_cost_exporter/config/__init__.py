"""Configuration: the YAML schema, the embedded price catalog and the server presets."""
