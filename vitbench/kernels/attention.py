def attention(q, k, v, *, scale=None, out=None):
    """Fused multi-head attention softmax(scale * q k^T) v for [B, H, T, d] inputs."""
    raise NotImplementedError  # PLACEHOLDER: being written
