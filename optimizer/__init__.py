"""Pure decision code of the WVA console: plain data in, plain data out."""
