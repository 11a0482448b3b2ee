from dorc.cli import main

main()
