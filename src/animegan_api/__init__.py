"""animegan-api: photos to anime-style pictures over HTTP."""

__version__ = "0.1.0"
