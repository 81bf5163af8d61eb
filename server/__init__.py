"""milvus-memory-mcp: long-term memory for AI agents over MCP, on Milvus and SQLite."""

__version__ = "0.1.0"
