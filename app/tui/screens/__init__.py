"""Dialogs (modal screens) of the chat app."""
