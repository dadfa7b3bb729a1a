"""The chaos run: the embedded queue under SIGKILLs and cut connections."""
