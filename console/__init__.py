"""Textual operator console and the headless command line. Never imports torch."""
