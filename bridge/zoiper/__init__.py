"""Zoiper configuration data: the schema, and rendering/parsing of the XML documents."""
