"""`InputError`: bad user input (file, field, what is allowed); the CLI prints it and exits 2."""


class InputError(ValueError):
    pass
