"""``leap0 mcp``: the MCP server giving agents sandboxes as tools (``pip install 'leap0[mcp]'``).

``leap0.mcp.logic`` holds the pure decisions; ``leap0.mcp.server`` the tools over ``leap0.Leap0Client``;
``leap0.mcp.run`` the command (stdio or streamable HTTP with a bearer token).
"""
