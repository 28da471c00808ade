"""Data files the program ships (chat template, stylesheets, default config, sample datasets).

A package only so that the files travel inside wheels and PyInstaller bundles; read them with
`importlib.resources.files("qwq_chat.assets")`.
"""
