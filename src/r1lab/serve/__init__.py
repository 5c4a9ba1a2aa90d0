"""OpenAI-compatible reasoning server: `reasoning_content` beside `content`, streaming, batching."""
