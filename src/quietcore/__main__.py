from quietcore.cli import run

run()
