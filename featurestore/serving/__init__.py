"""The HTTP feature server (FastAPI): ``featurestore serve``."""
