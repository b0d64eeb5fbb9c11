"""stream_service: live top-10 snapshots to every watcher over a gRPC server stream."""
