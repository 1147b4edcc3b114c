"""The OpenAI Responses API dialect: request, response and stream translators."""
