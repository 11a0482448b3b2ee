from dorc.cli import console_main

console_main()
