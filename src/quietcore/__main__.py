from quietcore.cli import main

main()
