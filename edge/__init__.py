"""edge: the HTTP and WebSocket front door (Starlette on uvicorn) over the gRPC services."""
