"""Entry script of the standalone binary: the same `main` as the `qwq-chat` console script."""

from app.cli import main

if __name__ == "__main__":
    main()
