"""Operations: the command line, the development cluster and key material, the supervisor,
the process harness, the city topology and the failover drills.

The top layer: it may import every other one, and nothing imports it but tools and tests.
"""

__all__: list[str] = []
