"""The start-up reference: a bare MCPServer with one trivial tool, over stdio."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("bare")


@server.tool()
def ping(text: str = "") -> str:
    """Answer with the text."""
    return text


if __name__ == "__main__":
    server.run()
