EPILOGUES = ("none", "gelu", "gelu_tanh", "residual", "gelu_residual")


def matmul(a, w, bias=None, *, epilogue="none", residual=None, precision="ieee", out=None):
    """out = epilogue(a @ w.T + bias); a [..., K] (2-D or 3-D), w [N, K] (nn.Linear layout)."""
    raise NotImplementedError  # PLACEHOLDER: being written
