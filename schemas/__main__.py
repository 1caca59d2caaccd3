"""`python -m schemas` regenerates the checked-in JSON Schema files."""

from schemas.generate import write_all

for path in write_all():
    print(path)  # noqa: T201 - a command-line tool reports what it wrote
