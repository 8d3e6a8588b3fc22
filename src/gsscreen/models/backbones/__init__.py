"""Backbone families; every module here is imported by the registry and registers its backbones."""
