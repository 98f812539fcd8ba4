"""``python -m app`` is ``idbridge``."""

from app.cli import main

main()
