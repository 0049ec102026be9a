"""An example app of the full-stack template's shape: SQLModel, and a database URL assembled
from separate settings, not read from one variable."""
