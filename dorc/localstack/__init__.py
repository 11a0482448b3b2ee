"""LocalStack the service: where it answers (``endpoint``), its host-mode install (``install``)
and its life cycle on the host or in Docker (``service``)."""
