"""`python -m ai_stack ...` is the same as the `ai-stack` command."""

from ai_stack.cli import main

main()
