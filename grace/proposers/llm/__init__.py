"""LLM proposers: an OpenAI-compatible chat client, in-process vLLM, the reply cache, prompts."""
