"""Command-line interface: parsing and rendering only; the work happens in the library."""
