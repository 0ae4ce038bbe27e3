"""`python main.py ...` is the same as the `ai-stack` command."""

from ai_stack.cli import main

if __name__ == "__main__":
    main()
