"""Report data and its renderers (terminal, JSON, Markdown)."""
