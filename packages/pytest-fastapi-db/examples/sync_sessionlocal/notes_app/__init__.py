"""An example app of the common tutorial shape: a module-level engine and `SessionLocal`."""
