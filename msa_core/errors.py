"""Errors raised for bad input, each naming what was wrong and what is allowed."""


class MSAInputError(ValueError):
    """Bad input to the MSA engine (coalitions, values, arguments)."""
