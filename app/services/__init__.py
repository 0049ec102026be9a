"""The rules of the product. Services change the session and queue events; they never commit."""
