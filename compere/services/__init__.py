"""What combines storage and domain code for more than one caller (HTTP and the CLI).

boards.py: whole-board computations and their cache; pairs.py: the next pair to show;
transfer.py: import and export formats; webhooks.py: the outbox dispatcher.
"""
