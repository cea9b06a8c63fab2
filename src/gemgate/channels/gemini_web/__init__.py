"""The gemini.google.com web app as a channel (`gemini_official`)."""

from gemgate.channels.gemini_web.channel import GeminiWeb

__all__ = ["GeminiWeb"]
