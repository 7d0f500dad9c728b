"""Report data and its renderers (terminal, JSON and its schema, Markdown, JUnit, HTML)."""
