"""Models on disk: the one owner of the volume's layout and file names (``layout``),
ZIP export and the checked import (``archive``).

``layout`` is plain Python (the engine imports it); ``archive`` needs the database.
"""
