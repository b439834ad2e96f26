"""`python -m hf_lelp ...` is the `hf-lelp` command (see hf_lelp.commands)."""

from .commands import main

if __name__ == "__main__":
    main()
