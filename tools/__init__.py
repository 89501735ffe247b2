"""Developer tools: the layer contract, vector generators, page screenshots."""
