"""codeengine: issue and verify signed health codes and service codes."""

__version__ = "0.1.0"
