"""Local emulator of the Anthropic, OpenAI and Gemini HTTP APIs (see server.py)."""
