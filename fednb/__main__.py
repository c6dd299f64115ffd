from fednb.cli import main

main()
