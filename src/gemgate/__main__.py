from gemgate.cli import main

main()
