"""Helpers shared by qfstack's tests: a test CA, the PocketID emulator runner."""
