"""One exception type for user mistakes; the CLI prints it as one line and exits 2."""


class VitbenchError(Exception):
    """A mistake in what the user asked for (bad argument, file, config or input tensor)."""
