def add(x, y, *, out=None):
    """out = x + y, y broadcast over x's leading dims (e.g. [B,T,D] + [1,T,D] or [D])."""
    raise NotImplementedError  # PLACEHOLDER: being written
