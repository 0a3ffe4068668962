"""xmodal's built-in plugins. Each module is an `xmodal` entry point, loaded like any other."""
