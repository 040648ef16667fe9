"""Reports: terminal (Rich), JSON, self-contained HTML with inline SVG charts, Markdown, safety card, trends."""
