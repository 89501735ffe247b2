"""Developer tools: the layer contract, the OpenAPI generator, vector generators, screenshots."""
