"""The HTTP API: app factory, routes, the Open Inference Protocol v2, the ASGI gate, request and
response schemas, the HTTP protocol's limits, the documentation pages.
"""
