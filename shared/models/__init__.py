"""Chat models and embeddings: the spec registry, the llama.cpp adapter and its tool-decision
protocol, the fake, OpenAI-compatible clients, the embedded model files."""
