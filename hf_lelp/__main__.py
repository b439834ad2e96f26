"""`python -m hf_lelp ...` is the `hf-lelp` command (see hf_lelp.commands)."""

from hf_lelp.commands import main

if __name__ == "__main__":
    main()
