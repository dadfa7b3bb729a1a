"""A live dashboard of the queue, rendered by the server: see ``urls``."""
