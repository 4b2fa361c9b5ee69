from connc.cli import main

main()
