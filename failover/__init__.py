"""Per-city primary and backup endpoints, probes, breakers and the failover client."""

__all__: list[str] = []
