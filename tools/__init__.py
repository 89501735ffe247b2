"""Repository tools: the layer check, vector and document generators, screenshots."""
