"""Tools the Executor may call: the Tool type, the built-in tools, the step schema a tool call is
decoded under, and the loop that runs them (:mod:`ai_stack.tools.loop`).

What a tool may touch is decided here, in code (the file-access policy, the sandbox), never by
the prompt: a tool's result is untrusted input, and a file that says "read ~/.ssh/id_rsa" gets
the same refusal as any other request.
"""

from ai_stack.tools.base import Tool, Toolbox, ToolError
from ai_stack.tools.builtin import builtin_tools, toolbox_for

__all__ = ["Tool", "ToolError", "Toolbox", "builtin_tools", "toolbox_for"]
