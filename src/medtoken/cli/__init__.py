"""The ``medtoken`` command line: a thin shell over library functions."""
