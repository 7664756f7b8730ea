from qfstack.cli import main

main()
