"""Provider price files (AWS Price List, Azure Retail Prices, GCP Cloud Billing Catalog) into catalog overlays.

A tool, not part of the running exporter: it reads a provider's official
machine-readable prices and writes the YAML overlay that `pricing.catalog_file`
loads. It imports config/ to validate what it writes; nothing imports it.
"""
