def patch_embed(pixels, weight, bias, *, precision="ieee"):
    """[B,C,H,W] image -> [B, num_patches, D] via im2col + GEMM; weight in Conv2d layout [D,C,p,p]."""
    raise NotImplementedError  # PLACEHOLDER: being written
