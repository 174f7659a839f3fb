"""Path helpers shared by the engine's hooks and the train / test entry points."""


def is_remote(path):
    """Whether ``path`` is a URI (``s3://...``, ``http://...``): nothing to check on local disk."""
    return path is not None and '://' in str(path)
