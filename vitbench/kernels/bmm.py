def bmm(a, b, *, scale=1.0, transpose_b=False, precision="ieee", out=None):
    """scale * a @ b (or a @ b^T); a [B, M, K], b [B, K, N] ([B, N, K] when transpose_b)."""
    raise NotImplementedError  # PLACEHOLDER: being written
