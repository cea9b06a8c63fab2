"""gemgate: Google Gemini behind the OpenAI, Anthropic and Gemini APIs."""

__version__ = "0.1.0"
