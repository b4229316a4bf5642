"""Domain logic: rating models and pair selection. Pure functions, no I/O."""
