"""A PocketID emulator for qfstack's tests: see ``emulator.py`` one level up."""
